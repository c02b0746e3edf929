"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008) of two rankings, and the credit of clicks.

- `team_draft(a, b, k, rng)`: repeatedly the team with fewer picks so far (a coin flip from `rng` on ties)
  adds its highest-ranked item not yet shown; returns the shown items and, per position, the team that
  picked it (0 = list a, 1 = list b). Once one team's list has no unused item the other keeps picking.
- `exposure_rng(exposure_id)`: the generator seeded from sha256 of the exposure id, so replaying an
  exposure reproduces its interleaving (and therefore its team assignment) exactly.
- `credit(teams, clicked_positions)`: clicks per team; `outcome(...)` the exposure's winner;
  `tally(outcomes)` the wins of each team and the ties, the input of statistics.sign_test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable, Sequence
from typing import Literal, TypeVar

import numpy as np

from models.errors import InputError

T = TypeVar("T", bound=Hashable)

TEAM_A = 0
# The arm label under which team-draft exposures are stored: each shows both arms, so none belongs to one.
INTERLEAVED_LABEL = "interleave"
TEAM_B = 1
Outcome = Literal["a", "b", "tie"]


def exposure_rng(exposure_id: str) -> np.random.Generator:
    """The generator of one exposure: seed = int.from_bytes(sha256(exposure_id.encode("utf-8")), "big").

    All 256 bits seed numpy's SeedSequence, so distinct ids give unrelated streams and one id always
    the same stream (across processes and numpy versions that keep PCG64 as the default bit generator).
    """
    if not isinstance(exposure_id, str):
        raise InputError(f"exposure_id must be a string, got {type(exposure_id).__name__}")
    seed = int.from_bytes(hashlib.sha256(exposure_id.encode("utf-8")).digest(), "big")
    return np.random.default_rng(seed)


def _next_unused(ranking: Sequence[T], start: int, shown: set[T]) -> int:
    """Index of the first item of `ranking` at or after `start` that is not shown yet (len if none)."""
    while start < len(ranking) and ranking[start] in shown:
        start += 1
    return start


def team_draft(a: Sequence[T], b: Sequence[T], k: int, rng: np.random.Generator) -> tuple[list[T], list[int]]:
    """Interleave rankings `a` and `b` (best first) into at most `k` distinct items by team draft.

    Returns (items, teams), both of length min(k, |set(a) | set(b)|); teams[i] is 0 when list a picked
    items[i], 1 when list b did. A pick takes the picking team's highest-ranked item not yet in `items`,
    so an item both lists contain is shown once, credited to whichever team took it first. The team with
    fewer picks picks next; on equal counts one draw `rng.random() < 0.5` decides (a when true). The coin
    is drawn only when both teams still have an unused item, so a team alone keeps picking without draws.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise InputError(f"k must be a non-negative integer, got {k!r}")
    items: list[T] = []
    teams: list[int] = []
    shown: set[T] = set()
    pos = [0, 0]
    lists = (a, b)
    picks = [0, 0]
    while len(items) < k:
        pos[0] = _next_unused(a, pos[0], shown)
        pos[1] = _next_unused(b, pos[1], shown)
        has_a, has_b = pos[0] < len(a), pos[1] < len(b)
        if not (has_a or has_b):
            break
        if not has_b:
            team = TEAM_A
        elif not has_a:
            team = TEAM_B
        elif picks[0] != picks[1]:
            team = TEAM_A if picks[0] < picks[1] else TEAM_B
        else:
            team = TEAM_A if rng.random() < 0.5 else TEAM_B
        item = lists[team][pos[team]]
        items.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return items, teams


def credit(teams: Sequence[int], clicked_positions: Iterable[int]) -> tuple[int, int]:
    """Clicks credited to (team a, team b): each click event at a 0-based position credits that position's team.

    A position clicked twice counts twice (click events, the same count as the CTR's numerator).
    """
    counts = [0, 0]
    n = len(teams)
    for p in clicked_positions:
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or not 0 <= p < n:
            raise InputError(f"clicked position {p!r} is not a position of the interleaved list (0..{n - 1})")
        team = teams[p]
        if team not in (TEAM_A, TEAM_B):
            raise InputError(f"teams[{p}] = {team!r}; teams must be 0 or 1")
        counts[team] += 1
    return counts[0], counts[1]


def outcome(clicks_a: int, clicks_b: int) -> Outcome:
    """The exposure's result: "a" when team a has more credited clicks, "b" when team b has, else "tie"."""
    if clicks_a > clicks_b:
        return "a"
    if clicks_b > clicks_a:
        return "b"
    return "tie"


def tally(outcomes: Iterable[Outcome]) -> tuple[int, int, int]:
    """(wins of a, wins of b, ties) over exposures; exposures without clicks are ties."""
    counts = {"a": 0, "b": 0, "tie": 0}
    for o in outcomes:
        if o not in counts:
            raise InputError(f"outcome must be 'a', 'b' or 'tie', got {o!r}")
        counts[o] += 1
    return counts["a"], counts["b"], counts["tie"]
