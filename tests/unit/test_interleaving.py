"""Team-draft interleaving: the draft rule replayed naively on random rankings, determinism per exposure, credit, fairness.

The rule is re-checked position by position from its definition (the picking team's first item not
shown yet; the team with fewer picks picks while both have unused items), and fairness with simulated
random clickers and scipy's binomial test. Nothing is compared with the code under test itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from app.experiments.interleaving import credit, exposure_rng, outcome, tally, team_draft
from models.errors import InputError


def random_lists(rng: np.random.Generator) -> tuple[list[int], list[int], int]:
    pool = int(rng.integers(1, 30))
    a = rng.permutation(pool)[: int(rng.integers(0, pool + 1))].tolist()
    b = rng.permutation(pool)[: int(rng.integers(0, pool + 1))].tolist()
    return a, b, int(rng.integers(0, 25))


def unused(ranking: list[int], shown: list[int]) -> list[int]:
    return [x for x in ranking if x not in shown]


@pytest.mark.parametrize("seed", range(300))
def test_the_draft_rule_holds_at_every_position(seed):
    rng = np.random.default_rng(seed)
    a, b, k = random_lists(rng)
    items, teams = team_draft(a, b, k, np.random.default_rng(1000 + seed))
    assert len(items) == len(teams) == min(k, len(set(a) | set(b)))
    assert len(set(items)) == len(items)
    assert set(items) <= set(a) | set(b)
    assert set(teams) <= {0, 1}
    for i, (item, team) in enumerate(zip(items, teams, strict=True)):
        shown = items[:i]
        left_a, left_b = unused(a, shown), unused(b, shown)
        own = (left_a, left_b)[team]
        assert own and item == own[0], (i, item, team)  # the team's best item not shown yet
        n_a, n_b = teams[:i].count(0), teams[:i].count(1)
        if left_a and left_b:
            assert abs(n_a - n_b) <= 1
            if n_a != n_b:
                assert team == (0 if n_a < n_b else 1)  # the team behind picks
    for team, ranking in ((0, a), (1, b)):
        picked = [x for x, t in zip(items, teams, strict=True) if t == team]
        assert [ranking.index(x) for x in picked] == sorted(ranking.index(x) for x in picked)


def test_identical_lists_give_the_list_with_teams_alternating_in_pairs():
    ranking = list(range(100, 120))
    first_of_pair = []
    for seed in range(200):
        for k in (7, 20, 30):
            items, teams = team_draft(ranking, ranking, k, np.random.default_rng(seed))
            assert items == ranking[:k]
            for j in range(0, len(teams) - 1, 2):
                assert sorted(teams[j : j + 2]) == [0, 1]
            first_of_pair.extend(teams[0::2])
    share_a = first_of_pair.count(0) / len(first_of_pair)
    assert 0.45 < share_a < 0.55  # the coin, not a fixed order, decides who opens each pair


def test_one_list_exhausted_the_other_keeps_picking():
    items, teams = team_draft([1, 2], [3, 4, 5, 6, 7], 10, np.random.default_rng(0))
    assert sorted(items) == [1, 2, 3, 4, 5, 6, 7]
    assert teams.count(0) == 2 and teams.count(1) == 5
    assert teams[-3:] == [1, 1, 1]
    assert team_draft([], [], 5, np.random.default_rng(0)) == ([], [])
    assert team_draft([1, 2], [3], 0, np.random.default_rng(0)) == ([], [])


def test_same_exposure_same_interleaving_other_exposures_differ():
    a, b = list(range(10)), list(range(10, 20))
    first = team_draft(a, b, 10, exposure_rng("exp-42"))
    for _ in range(5):
        assert team_draft(a, b, 10, exposure_rng("exp-42")) == first
    others = {tuple(team_draft(a, b, 10, exposure_rng(f"exp-{i}"))[1]) for i in range(50)}
    assert len(others) > 10  # 2^5 possible coin patterns for 10 disjoint picks


def test_credit_counts_click_events_per_team():
    teams = [0, 1, 1, 0, 1]
    assert credit(teams, []) == (0, 0)
    assert credit(teams, [0]) == (1, 0)
    assert credit(teams, [1, 2, 4]) == (0, 3)
    assert credit(teams, [0, 3, 2, 2]) == (2, 2)  # position 2 clicked twice counts twice
    assert outcome(2, 1) == "a" and outcome(0, 3) == "b" and outcome(2, 2) == "tie" and outcome(0, 0) == "tie"
    assert tally(["a", "tie", "b", "a", "tie", "tie"]) == (2, 1, 3)
    with pytest.raises(InputError, match="position"):
        credit(teams, [5])
    with pytest.raises(InputError, match="position"):
        credit(teams, [-1])


def test_bad_parameters_are_refused():
    with pytest.raises(InputError, match="k"):
        team_draft([1], [2], -1, np.random.default_rng(0))
    with pytest.raises(InputError, match="k"):
        team_draft([1], [2], 2.5, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="exposure_id"):
        exposure_rng(7)  # type: ignore[arg-type]


@pytest.mark.parametrize("clicker", ["uniform", "top"])
def test_random_clicks_favour_neither_team(clicker):
    """A clicker blind to the teams: team draft must give wins ≈ losses (two-sided sign test p > 0.001).

    k varies (odd k and exhausted lists included) and overlapping lists share items, so a fixed opener
    or a bias in the coin would tilt the positions, hence the wins, towards one team.
    """
    rng = np.random.default_rng(7 if clicker == "uniform" else 8)
    outcomes = []
    for i in range(20_000):
        pool = int(rng.integers(2, 15))
        a = rng.permutation(pool)[: int(rng.integers(1, pool + 1))].tolist()
        b = rng.permutation(pool)[: int(rng.integers(1, pool + 1))].tolist()
        items, teams = team_draft(a, b, int(rng.integers(1, 10)), exposure_rng(f"{clicker}-{i}"))
        # "top" clicks the first position only, whose team is the opening coin flip's.
        clicks = rng.integers(0, len(items), int(rng.integers(0, 3))).tolist() if clicker == "uniform" else [0]
        outcomes.append(outcome(*credit(teams, clicks)))
    wins_a, wins_b, ties = outcomes.count("a"), outcomes.count("b"), outcomes.count("tie")
    assert wins_a + wins_b + ties == 20_000 and wins_a + wins_b > 5_000
    assert binomtest(wins_a, wins_a + wins_b, 0.5).pvalue > 0.001, (wins_a, wins_b, ties)
