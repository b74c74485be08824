"""``tune``'s choices without a server: a candidate's score under the p99 bound, when higher
levels are skipped, the final decision (infeasible sides, ties and the margin keep the
default), and the coordinate descent within its time budget (a scripted evaluator and clock)."""

import pytest

from generator.tune.measure import Candidate, past_bound, score
from generator.tune.search import Budget, coordinate_descent
from generator.tune.select import best_of, better, decide, round_order
from generator.tune.space import KnobSpace


def _row(c, img_s, p99, errors=0):
    return {"concurrency": c, "requests": 100, "errors": errors, "throughput_img_s": img_s, "p50_ms": p99 / 2,
            "p99_ms": p99}


def test_score_is_the_best_throughput_within_the_bound():
    rows = [_row(1, 20, 80), _row(4, 45, 240), _row(8, 50, 400)]
    assert score(rows, 250) == (45, 240)
    assert score(rows, 500) == (50, 400)
    assert score(rows, 50) == (None, None)  # infeasible


def test_errors_make_a_candidate_infeasible():
    assert score([_row(1, 20, 80), _row(4, 45, 100, errors=1)], 250) == (None, None)


def test_higher_levels_skipped_once_past_the_bound():
    assert not past_bound([_row(1, 20, 300)], 250)  # one level over the bound: maybe a stall
    assert past_bound([_row(1, 20, 300), _row(4, 30, 260)], 250)  # two in a row
    assert past_bound([_row(1, 20, 600)], 250)  # over twice the bound
    assert past_bound([_row(1, 20, 100, errors=2)], 250)
    assert not past_bound([_row(1, 20, 300), _row(4, 30, 200)], 250)


def test_better_and_best_of_treat_none_as_infeasible():
    assert better(1.0, None) and not better(None, 1.0) and not better(None, None)
    assert not better(10.0, 10.0)  # a tie keeps what the search has
    assert best_of([None, 3.0, 2.0]) == 3.0 and best_of([None, None]) is None


def test_rounds_are_interleaved():
    assert round_order(2) == ["default", "winner", "winner", "default"]
    assert round_order(1) == ["default", "winner"]


@pytest.mark.parametrize("default, winner, chosen", [
    ([40.0, 42.0], [44.0, 43.0], "winner"),    # 44 / 42 = 1.048 > 1.03
    ([40.0, 42.0], [43.0, 41.0], "default"),   # 43 / 42 = 1.024: within the margin
    ([42.0, 40.0], [42.0, 30.0], "default"),   # a tie keeps the default
    ([None, None], [20.0, None], "winner"),    # the default never met the bound
    ([30.0, None], [None, None], "default"),   # the winner never did
    ([None, None], [None, None], "default"),
])
def test_decide_keeps_the_default_unless_beaten_by_the_margin(default, winner, chosen):
    d = decide(default, winner, margin=0.03)
    assert d["chosen"] == chosen, d["why"]
    assert d["default_score"] == best_of(default) and d["winner_score"] == best_of(winner)


def test_decide_says_why_the_default_stays():
    d = decide([42.0], [43.0], margin=0.03)
    assert "not 3% above the default's 42.0 img/s" in d["why"] and d["ratio"] == pytest.approx(43 / 42)


# -- the search ---------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _space():
    """Two knobs: instances 1..8 (+-1), the queue delay on its ladder."""
    return KnobSpace(["detector_instances", "queue_delay_us"])


def _search(objective, budget_s=1e9, cost=10.0, start=None):
    clock = Clock()
    budget = Budget(budget_s, reserve_runs=4, clock=clock)
    measured = []

    def evaluate(knobs):
        clock.t += cost
        budget.costs.append(cost)
        c = Candidate(len(measured) + 1, knobs, {}, "search", score=objective(knobs))
        measured.append(c)
        return c

    start = start or {"detector_instances": 1, "queue_delay_us": 2000}
    default = Candidate(0, start, {}, "default", score=objective(start))
    budget.costs.append(cost)
    clock.t += cost
    return coordinate_descent(_space(), default, evaluate, budget), measured, default


def test_descent_climbs_each_knob_to_its_best():
    # best at 3 instances and 8000 us; the score peaks there, separably
    best, measured, _ = _search(lambda k: 100 - (k["detector_instances"] - 3) ** 2
                                - abs(k["queue_delay_us"] - 8000) / 1000)
    assert best.knobs == {"detector_instances": 3, "queue_delay_us": 8000}
    assert len({tuple(sorted(c.knobs.items())) for c in measured}) == len(measured)  # none measured twice


def test_descent_returns_the_default_when_nothing_beats_it():
    best, measured, default = _search(lambda k: 50.0)  # every candidate ties
    assert best is default and measured


def test_infeasible_candidates_never_win():
    best, _, default = _search(lambda k: None if k != {"detector_instances": 1, "queue_delay_us": 2000} else 10.0)
    assert best is default


def test_descent_stops_before_overrunning_the_budget():
    # each candidate costs 10 s; 4 are kept in reserve for the confirmation
    best, measured, _ = _search(lambda k: float(k["detector_instances"]), budget_s=100.0)
    spent = 10.0 * (1 + len(measured))
    assert spent + 4 * 10.0 <= 100.0 and len(measured) == 5


def test_budget_fits_uses_the_most_expensive_candidate_so_far():
    clock = Clock()
    budget = Budget(60.0, reserve_runs=2, clock=clock)
    budget.costs += [5.0, 15.0]
    clock.t = 14.0
    assert budget.fits()  # 14 + 3 * 15 = 59
    clock.t = 16.0
    assert not budget.fits()
