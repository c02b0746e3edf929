"""The experiments endpoints' bodies: POST /feedback, GET /experiments, GET /experiments/{name}/report."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class FeedbackBody(BaseModel):
    """POST /feedback's JSON object. Strict: JSON types as the schema says them (no "1.5" or true for a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
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


Interval = Annotated[list[float | None], Field(min_length=2, max_length=2, description="[lo, hi]; [null, null] when undefined.")]


class Ctr(BaseModel):
    value: float | None = Field(description="Click events / exposures; null without exposures.")
    ci95: Interval = Field(description="Wilson 95% interval; null when clicks exceed exposures (no proportion).")


class Lift(BaseModel):
    value: float | None = Field(description="CTR of this arm / CTR of the first arm − 1; null when undefined.")
    ci95: Interval = Field(
        description="95% interval: delta method on unit-level sums (A/B), paired delta method on each unit's "
        "credited clicks (interleave)."
    )
    p_value: float | None = Field(description="Two-sided z-test of log(ratio) = 0.")


class ArmStats(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    model: str
    metric: str
    weight: float
    share: float | None = Field(description="The arm's share of the buckets (A/B); null in interleave mode.")
    units: int
    exposures: int
    events: dict[str, int] = Field(description="Events per type, click first (interleave: credited to the arm's team).")
    ctr: Ctr
    lift: Lift | None = Field(description="Over the first arm; null for the first arm.")


class Srm(BaseModel):
    chi2: float | None
    p_value: float | None
    flag: bool = Field(description="p_value < 0.001: the units (A/B) or the draft's first picks (interleave) are off.")


class SignTest(BaseModel):
    wins: int = Field(description="Exposures the first arm won.")
    losses: int = Field(description="Exposures the second arm won.")
    ties: int
    p_value: float | None = Field(description="Two-sided exact binomial test, ties dropped; null without wins or losses.")


class Interleaving(BaseModel):
    model_config = ConfigDict(extra="allow")
    exposures: int
    units: int
    wins: dict[str, int] = Field(description="Per arm: exposures where its team got more credited clicks.")
    ties: int
    clicks: dict[str, int] = Field(description="Per arm: clicks credited to its team.")
    sign_test: SignTest


class UnlistedArm(BaseModel):
    units: int
    exposures: int


class ReportResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    mode: str
    endpoint: str
    arms: list[ArmStats]
    srm: Srm = Field(description="Sample-ratio mismatch check (flag: p < 0.001).")
    interleaving: Interleaving | None = Field(None, description="Interleave mode: wins, ties and the sign test.")
    unlisted_arms: dict[str, UnlistedArm] = Field(description="Stored arm labels the experiments file does not list.")
    methods: dict[str, str] = Field(description="How each quantity is computed.")
    artifact_version: str | None = None


class ExperimentsResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    configured: bool = Field(description="false when EXPERIMENTS_FILE is unset.")
    experiments: list[dict[str, Any]] = Field(description="Each experiment's definition (name, endpoint, salt, mode, arms).")
    status: dict[str, Any] | None = Field(description="File, fingerprint, load time, last refusal, event counts.")
