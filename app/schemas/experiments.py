"""The experiments endpoints' bodies: POST /feedback, GET /experiments, GET /experiments/{name}/report."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    exposure_id: str = Field(min_length=1, max_length=64, description="From the response's `experiment.exposure_id`.")
    item_id: str = Field(min_length=1, max_length=256, description="The item (or user) of that response acted on.")
    event: str = Field(
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="`click`, `conversion` or a short custom name (lower case, up to 32 characters).",
        examples=["click"],
    )
    value: float | None = Field(None, allow_inf_nan=False, description="Optional amount (a conversion's revenue).")
    event_id: str | None = Field(
        None, min_length=1, max_length=128, description="Client id of the event: repeating it is accepted once (idempotent)."
    )


class FeedbackAccepted(BaseModel):
    accepted: bool = Field(description="Always true: the event is queued for the events database.")
    exposure_id: str
    event_id: str | None
    validated: bool = Field(
        description="false when the events database could not be asked whether the exposure exists (it was down): the "
        "event is queued anyway rather than failing the request."
    )


class ArmStats(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    units: int
    exposures: int
    events: dict[str, int]
    ctr: dict[str, Any] = Field(description='{"value", "ci95": [lo, hi]}: clicks / exposures, Wilson 95%.')
    lift: dict[str, Any] | None = Field(
        description='{"value", "ci95", "p_value"} over the first arm (delta method on unit sums); null for the first arm.'
    )


class ReportResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    mode: str
    arms: list[ArmStats]
    srm: dict[str, Any] = Field(description='Sample-ratio mismatch: {"chi2", "p_value", "flag"} (flag: p < 0.001).')
    interleaving: dict[str, Any] | None = Field(None, description="Interleave mode: wins, ties and the sign test.")
    artifact_version: str | None = None


class ExperimentsResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    configured: bool = Field(description="false when EXPERIMENTS_FILE is unset.")
    experiments: list[dict[str, Any]] = Field(description="Each experiment's definition (name, endpoint, salt, mode, arms).")
    status: dict[str, Any] | None = Field(description="File, fingerprint, load time, last refusal, event counts.")
