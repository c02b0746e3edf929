"""The experiments file: a valid file's structure and fingerprint, and every refusal naming the file, experiment and field.

Each invalid file is a valid one with one change, written out by a small TOML writer here, so every
case fails for exactly the reason it names.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.experiments.definitions import (
    Arm,
    Experiment,
    Experiments,
    ExperimentsError,
    file_fingerprint,
    load_experiments,
    parse_experiments,
)
from models.errors import InputError

MODELS = ("denoising-symmetric", "svd")
METRICS = ("dot", "cosine", "projected", "projected-centered", "whitened")
RECOMMEND_METRICS = ("dot", "cosine", "projected", "projected-centered")

VALID_TEXT = """\
# Two experiments, as an operator writes them.
[[experiment]]
name = "item-metric"
endpoint = "similar-items"        # similar-items | similar-users | recommend
salt = "2026-12"
mode = "ab"
arms = [
  { name = "control",   model = "denoising-symmetric", metric = "cosine",    weight = 50 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 50 },
]

[[experiment]]
name = "recommend-interleave"
endpoint = "recommend"
salt = "r1"
mode = "interleave"
arms = [
  { name = "a", model = "svd", metric = "dot", weight = 1 },
  { name = "b", model = "denoising-symmetric", metric = "projected-centered", weight = 2.5 },
]
"""


def base() -> list[dict[str, Any]]:
    """The experiments of VALID_TEXT as data, for one-change variants."""
    return [
        {
            "name": "item-metric",
            "endpoint": "similar-items",
            "salt": "2026-12",
            "mode": "ab",
            "arms": [
                {"name": "control", "model": "denoising-symmetric", "metric": "cosine", "weight": 50},
                {"name": "projected", "model": "denoising-symmetric", "metric": "projected", "weight": 50},
            ],
        },
        {
            "name": "users",
            "endpoint": "similar-users",
            "salt": "u1",
            "mode": "ab",
            "arms": [
                {"name": "a", "model": "svd", "metric": "whitened", "weight": 1},
                {"name": "b", "model": "svd", "metric": "dot", "weight": 2},
                {"name": "c", "model": "svd", "metric": "cosine", "weight": 3},
            ],
        },
    ]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml(experiments: list[dict[str, Any]]) -> str:
    blocks = []
    for table in experiments:
        blocks.append("[[experiment]]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items()))
    return "\n".join(blocks)


def write(tmp_path: Path, text: str | bytes, name: str = "experiments.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> Experiments:
    return load_experiments(path, MODELS, METRICS, RECOMMEND_METRICS)


def test_a_valid_file_loads_with_its_structure(tmp_path):
    path = write(tmp_path, VALID_TEXT)
    loaded = load(path)
    assert loaded.fingerprint == hashlib.sha256(VALID_TEXT.encode()).hexdigest() == file_fingerprint(path)
    assert [e.name for e in loaded.experiments] == ["item-metric", "recommend-interleave"]
    assert list(loaded.by_name) == ["item-metric", "recommend-interleave"]
    first = loaded.by_name["item-metric"]
    assert first == Experiment(
        "item-metric",
        "similar-items",
        "2026-12",
        "ab",
        (Arm("control", "denoising-symmetric", "cosine", 50), Arm("projected", "denoising-symmetric", "projected", 50)),
    )
    assert first.ranges == (range(0, 5000), range(5000, 10000))
    second = loaded.by_name["recommend-interleave"]
    assert (second.endpoint, second.salt, second.mode) == ("recommend", "r1", "interleave")
    assert second.arms == (Arm("a", "svd", "dot", 1), Arm("b", "denoising-symmetric", "projected-centered", 2.5))
    assert isinstance(second.arms[1].weight, float) and isinstance(second.arms[0].weight, int)
    assert loaded.for_endpoint("recommend") == (second,)
    assert loaded.for_endpoint("similar-users") == ()


def test_the_data_writer_round_trips(tmp_path):
    loaded = load(write(tmp_path, toml(base())))
    assert [e.name for e in loaded.experiments] == ["item-metric", "users"]
    assert [a.metric for a in loaded.by_name["users"].arms] == ["whitened", "dot", "cosine"]
    assert [len(r) for r in loaded.by_name["users"].ranges] == [1667, 3333, 5000]


def test_the_result_is_immutable(tmp_path):
    loaded = load(write(tmp_path, VALID_TEXT))
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.fingerprint = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.experiments[0].salt = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.experiments[0].arms[0].weight = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        loaded.by_name["new"] = loaded.experiments[0]  # type: ignore[index]
    assert isinstance(loaded.experiments, tuple) and isinstance(loaded.experiments[0].arms, tuple)


def test_the_fingerprint_follows_the_bytes(tmp_path):
    path = write(tmp_path, VALID_TEXT)
    before = load(path).fingerprint
    assert load(path).fingerprint == before
    path.write_text(VALID_TEXT + "\n# a comment changes the bytes, not the experiments\n", encoding="utf-8")
    assert file_fingerprint(path) != before
    assert load(path).fingerprint == file_fingerprint(path) != before


@pytest.mark.parametrize("text", ["", "# nothing running\n"])
def test_a_file_without_experiments_holds_none(tmp_path, text):
    loaded = load(write(tmp_path, text))
    assert loaded.experiments == () and dict(loaded.by_name) == {}
    assert loaded.fingerprint == hashlib.sha256(text.encode()).hexdigest()


def test_the_loader_does_not_import_the_serving_code():
    code = "import sys, app.experiments; print(sorted(m for m in sys.modules if m.startswith('app.serving')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def arm(i: int, j: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    return lambda d: d[i]["arms"][j]


def setter(get: Callable[[list[dict[str, Any]]], dict[str, Any]], key: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(d: list[dict[str, Any]]) -> None:
        get(d)[key] = value

    return change


def deleter(get: Callable[[list[dict[str, Any]]], dict[str, Any]], key: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(d: list[dict[str, Any]]) -> None:
        del get(d)[key]

    return change


def exp(i: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    return lambda d: d[i]


def add_arm(d: list[dict[str, Any]]) -> None:
    d[0]["arms"].append({"name": "third", "model": "svd", "metric": "dot", "weight": 10})


def set_weights(d: list[dict[str, Any]], *weights: float) -> None:
    for table, weight in zip(d[0]["arms"], weights, strict=True):
        table["weight"] = weight


def interleave_one_arm(d: list[dict[str, Any]]) -> None:
    d[0]["mode"] = "interleave"
    d[0]["arms"].pop()


def second_named(name: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(d: list[dict[str, Any]]) -> None:
        d[1]["name"] = name

    return change


# (change to base(), then substrings the message must hold besides the file name)
CASES: dict[str, tuple[Callable[[list[dict[str, Any]]], None], list[str]]] = {
    "unknown model": (
        setter(arm(1, 2), "model", "bpr"),
        ["experiment[1] 'users'", "field arms[2].model", "unknown model 'bpr'", "allowed: denoising-symmetric, svd"],
    ),
    "unknown metric": (
        setter(arm(0, 1), "metric", "euclidean"),
        ["experiment[0] 'item-metric'", "field arms[1].metric", "unknown metric 'euclidean'", "allowed: dot, cosine, projected"],
    ),
    "recommend cannot use whitened": (
        lambda d: d[1].update(endpoint="recommend"),
        ["experiment[1] 'users'", "field arms[0].metric", "'whitened' cannot serve endpoint 'recommend'", "projected-centered"],
    ),
    "duplicate experiment name": (
        second_named("item-metric"),
        ["experiment[1] 'item-metric'", "field name", "duplicate experiment name", "also experiment[0]"],
    ),
    "duplicate arm name": (
        setter(arm(1, 2), "name", "a"),
        ["experiment[1] 'users'", "field arms[2].name", "duplicate arm name 'a'", "also arms[0]"],
    ),
    "zero weight": (setter(arm(0, 0), "weight", 0), ["experiment[0] 'item-metric'", "field arms[0].weight", "positive finite"]),
    "zero float weight": (setter(arm(0, 1), "weight", 0.0), ["field arms[1].weight", "positive finite", "0.0"]),
    "negative weight": (setter(arm(1, 1), "weight", -3), ["experiment[1] 'users'", "field arms[1].weight", "got -3"]),
    "nan weight": (setter(arm(0, 0), "weight", math.nan), ["field arms[0].weight", "positive finite", "nan"]),
    "inf weight": (setter(arm(0, 0), "weight", math.inf), ["field arms[0].weight", "positive finite", "inf"]),
    "huge integer weight": (setter(arm(0, 0), "weight", 10**400), ["field arms[0].weight", "positive finite"]),
    "string weight": (setter(arm(0, 0), "weight", "50"), ["field arms[0].weight", "must be a number, got a string"]),
    "boolean weight": (setter(arm(0, 0), "weight", True), ["field arms[0].weight", "must be a number, got a boolean"]),
    "zero-width arm": (
        lambda d: set_weights(d, 1, 10**6),
        ["experiment[0] 'item-metric'", "field arms[0].weight", "arm 'control'", "none of the 10000 buckets"],
    ),
    "interleave with three arms": (
        lambda d: d[1].update(mode="interleave"),
        ["experiment[1] 'users'", "field arms", "'interleave'", "exactly two arms, got 3"],
    ),
    "interleave with one arm": (
        interleave_one_arm,
        ["experiment[0] 'item-metric'", "field arms", "exactly two arms, got 1"],
    ),
    "no arms": (setter(exp(0), "arms", []), ["experiment[0] 'item-metric'", "field arms", "at least one arm"]),
    "unknown endpoint": (
        setter(exp(0), "endpoint", "recommendations"),
        [
            "experiment[0] 'item-metric'",
            "field endpoint",
            "unknown endpoint 'recommendations'",
            "similar-items, similar-users, recommend",
        ],
    ),
    "unknown mode": (
        setter(exp(1), "mode", "bandit"),
        ["experiment[1] 'users'", "field mode", "unknown mode 'bandit'", "ab, interleave"],
    ),
    "missing salt": (
        deleter(exp(1), "salt"),
        ["experiment[1] 'users'", "field salt", "missing", "name, endpoint, salt, mode, arms"],
    ),
    "missing name": (deleter(exp(1), "name"), ["experiment[1]", "field name", "missing"]),
    "extra experiment field": (
        setter(exp(0), "owner", "me"),
        ["experiment[0]", "field owner", "unknown field", "allowed: name, endpoint, salt, mode, arms"],
    ),
    "missing arm weight": (deleter(arm(0, 1), "weight"), ["experiment[0] 'item-metric'", "field arms[1].weight", "missing"]),
    "extra arm field": (
        setter(arm(1, 0), "k", 10),
        ["experiment[1] 'users'", "field arms[0].k", "unknown field", "allowed: name, model, metric, weight"],
    ),
    "integer salt": (
        setter(exp(0), "salt", 2026),
        ["experiment[0] 'item-metric'", "field salt", "must be a string, got an integer"],
    ),
    "numeric name": (setter(exp(1), "name", 7), ["experiment[1]", "field name", "must be a string, got an integer"]),
    "array endpoint": (setter(exp(0), "endpoint", ["similar-items"]), ["field endpoint", "must be a string, got an array"]),
    "arms a string": (
        setter(exp(0), "arms", "control"),
        ["experiment[0] 'item-metric'", "field arms", "array of tables", "string"],
    ),
    "arms of numbers": (setter(exp(0), "arms", [1, 2]), ["experiment[0] 'item-metric'", "field arms", "array of tables"]),
    "table model": (setter(arm(0, 0), "model", {"name": "svd"}), ["field arms[0].model", "must be a string, got a table"]),
    "empty experiment name": (second_named(""), ["experiment[1]", "field name", "must not be empty"]),
    "blank arm name": (
        setter(arm(0, 1), "name", "  "),
        ["experiment[0] 'item-metric'", "field arms[1].name", "must not be empty"],
    ),
    "empty salt": (setter(exp(0), "salt", ""), ["experiment[0] 'item-metric'", "field salt", "must not be empty"]),
    "empty model": (setter(arm(1, 0), "model", ""), ["experiment[1] 'users'", "field arms[0].model", "must not be empty"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_refusal_names_the_file_experiment_and_field(tmp_path, case):
    change, expected = CASES[case]
    experiments = copy.deepcopy(base())
    change(experiments)
    path = write(tmp_path, toml(experiments))
    with pytest.raises(ExperimentsError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, (part, message)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)


def test_the_models_and_metrics_come_from_the_caller(tmp_path):
    path = write(tmp_path, VALID_TEXT)
    with pytest.raises(
        ExperimentsError, match=r"experiment\[1\] 'recommend-interleave', field arms\[0\]\.model: unknown model 'svd'"
    ):
        load_experiments(path, ("denoising-symmetric",), METRICS, RECOMMEND_METRICS)
    with pytest.raises(
        ExperimentsError, match=r"field arms\[1\]\.metric: metric 'projected-centered' cannot serve endpoint 'recommend'"
    ):
        load_experiments(path, MODELS, METRICS, ("dot", "cosine"))
    with pytest.raises(ExperimentsError, match=r"field arms\[0\]\.metric: unknown metric 'cosine'; allowed: \(none\)"):
        load_experiments(path, MODELS, (), ())


def test_toml_syntax_errors_report_line_and_column(tmp_path):
    text = '[[experiment]]\nname = "x"\nsalt = 2026-\nmode = "ab"\n'
    path = write(tmp_path, text)
    with pytest.raises(ExperimentsError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML") and "line 3" in message and "column" in message


def test_a_toml_duplicate_key_is_a_syntax_error(tmp_path):
    path = write(tmp_path, '[[experiment]]\nname = "x"\nname = "y"\n')
    with pytest.raises(ExperimentsError, match=r"invalid TOML.*line 3"):
        load(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('salt = "x"\n', "unknown top-level field 'salt'"),
        ("experiment = 5\n", "field 'experiment' must be an array of tables"),
        ("[experiment]\nname = 'x'\n", "field 'experiment' must be an array of tables ([[experiment]]), got a table"),
    ],
)
def test_the_top_level_holds_only_experiment_tables(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ExperimentsError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_unreadable_files_are_refused_with_their_name(tmp_path):
    missing = tmp_path / "absent.toml"
    with pytest.raises(ExperimentsError, match=r"absent\.toml: cannot read"):
        load(missing)
    with pytest.raises(ExperimentsError, match=r"absent\.toml: cannot read"):
        file_fingerprint(missing)
    latin1 = write(tmp_path, 'salt = "caf\xe9"\n'.encode("latin-1"), name="latin1.toml")
    with pytest.raises(ExperimentsError, match=r"latin1\.toml: not UTF-8"):
        load(latin1)


def test_parse_experiments_names_its_source():
    with pytest.raises(ExperimentsError, match=r"^inline: experiment\[0\] 'x', field endpoint: missing"):
        parse_experiments(b'[[experiment]]\nname = "x"\n', "inline", MODELS, METRICS, RECOMMEND_METRICS)
