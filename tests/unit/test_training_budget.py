"""``--time-budget``: epochs sized from measured speed, the schedule sized to them, the demo's plan."""

import pytest
import torch
from click.testing import CliRunner

from generator.cli import cli
from generator.data.synth import synthesize
from generator.demo_plan import TRAINING_STEPS, DemoPlan, FixedCosts, estimate_fixed
from generator.errors import UsageError
from generator.training.budget import EpochPlan, SpeedProbe, epochs_that_fit, replan
from generator.training.trainer import TrainConfig, lr_at, train


def test_epochs_fit_the_budget_with_the_first_epoch_and_validation_counted():
    # 10 batches/epoch at 1 s: 100 s - 4% margin - 5 s spent - 10 s validation - 7 s to finish epoch 1 = 74 s
    assert epochs_that_fit(100, 5, 1.0, 10, 3, 10, max_epochs=1000) == 1 + 7
    assert epochs_that_fit(100, 5, 1.0, 10, 3, 10, max_epochs=4) == 4  # --epochs caps
    assert epochs_that_fit(10, 5, 1.0, 10, 3, 10, max_epochs=50) == 1  # too small: one epoch, never zero
    assert epochs_that_fit(100, 5, 2.0, 10, 3, 10, max_epochs=1000) < epochs_that_fit(100, 5, 1.0, 10, 3, 10, 1000)


def test_speed_probe_skips_warmup_batches_and_averages_the_timed_ones():
    times = iter([10.0, 13.0])  # read when the warm-up ends (10 s) and after 3 timed batches (13 s)
    probe = SpeedProbe(measure=3, warmup=2, clock=lambda: next(times))
    done = [probe.tick() for _ in range(5)]
    assert done == [False, False, False, False, True] and probe.batch_s == pytest.approx(1.0)
    short = SpeedProbe(measure=6, warmup=1, clock=iter([0.0, 4.0]).__next__)
    short.tick(), short.tick(), short.tick()
    assert short.batch_s is None and short.finish_early() and short.batch_s == pytest.approx(2.0)


def test_a_run_that_falls_behind_gets_fewer_epochs_and_one_ahead_early_gets_more():
    plan = EpochPlan(budget_s=100, batch_s=1, batches_per_epoch=10, validation_s=5, epochs=8, max_epochs=50)
    assert replan(plan, epochs_done=2, elapsed_s=25, epoch_s=10) is None  # 6 x 10 s fit in 70 s, no room for more
    assert replan(plan, epochs_done=2, elapsed_s=25, epoch_s=20) == 2 + 3  # 70 s / 20 s per epoch
    assert replan(plan, epochs_done=2, elapsed_s=99, epoch_s=20) == 2  # stop now
    assert replan(plan, epochs_done=2, elapsed_s=25, epoch_s=5) == 2 + 13  # (70 - 4 s margin) / 5 s per epoch
    assert replan(plan, epochs_done=5, elapsed_s=25, epoch_s=5) is None  # past half the run: the schedule stays
    assert replan(EpochPlan(100, 1, 10, 5, 8, max_epochs=9), 2, 25, 5) == 9  # --epochs still caps
    assert "8 epochs fit 100 s" in plan.summary() and "measured 1.00 s/batch" in plan.summary()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("data") / "shapes", 20, seed=3, imgsz=64, classes=1, progress=False)


def _run(tiny_data, tmp_path, budget, epochs):
    lines = []
    cfg = TrainConfig(data=str(tiny_data), model="yolo-n", out=str(tmp_path / "b.pt"), imgsz=64, epochs=epochs,
                      batch=4, time_budget=budget)
    return train(cfg, echo=lines.append, progress=False), lines, cfg


def test_time_budget_sizes_the_epochs_and_the_schedule_ends_with_them(tiny_data, tmp_path):
    result, lines, cfg = _run(tiny_data, tmp_path, budget=3600, epochs=3)  # the budget is ample: --epochs caps
    assert result.epochs == 3 and len(result.history) == 3 and result.plan["epochs"] == 3
    assert any(line.startswith("time budget: measured") and "capped by --epochs 3" in line for line in lines)
    state = torch.load(cfg.out, weights_only=True)["extra"]
    assert state["train_run"]["time_budget"]["budget_s"] == 3600 and state["train_run"]["precision"]["name"] == "fp32"
    per_epoch = result.plan["batches_per_epoch"]
    last_lr = state["train_state"]["optimizer"]["param_groups"][0]["lr"]
    total = per_epoch * 3
    assert last_lr == pytest.approx(lr_at(total - 1, total, per_epoch, cfg.lr, cfg.final_lr_ratio))
    assert last_lr < 0.1 * cfg.lr  # cosine ran to its end


def test_a_budget_too_small_for_two_epochs_gives_one_complete_epoch(tiny_data, tmp_path):
    result, _, _ = _run(tiny_data, tmp_path, budget=0.5, epochs=50)
    assert result.epochs == 1 and "map50" in result.history[-1]


def test_time_budget_is_checked(tiny_data, tmp_path):
    with pytest.raises(UsageError, match="--time-budget must be a positive number of seconds, got 0"):
        train(TrainConfig(data=str(tiny_data), out=str(tmp_path / "x.pt"), imgsz=64, time_budget=0), progress=False)
    with pytest.raises(UsageError, match="--resume .* cannot take a --time-budget"):
        train(TrainConfig(data=str(tiny_data), out=str(tmp_path / "x.pt"), imgsz=64, time_budget=60, resume=True),
              progress=False)
    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "x.pt"),
                                 "--time-budget", "-5"])
    assert r.exit_code != 0 and "--time-budget must be a positive number" in r.output


def _plan():
    return DemoPlan(600, FixedCosts(10, 10, 10, 10), dict(zip(TRAINING_STEPS, (0.4, 0.2, 0.3, 0.1))), 0.01)


def test_demo_plan_shares_the_time_left_among_the_steps_still_to_run():
    plan = _plan()
    left = plan.training_left()
    assert 520 < left < 560  # 600 s less 3% margin less 40 s of fixed steps
    assert plan.budget_for("teacher") == pytest.approx(0.4 * left, rel=0.01)
    plan.record("teacher", 200, 10, 300, None)  # the teacher ran long: the others share what is left
    plan.t_start -= 300
    assert plan.budget_for("student") == pytest.approx(plan.training_left() * 0.2 / 0.6, rel=0.01)
    assert set(plan.to_json()) >= {"budget_s", "fixed_estimate_s", "shares", "steps", "actual_s"}


def test_fixed_cost_estimate_grows_with_slower_inference_and_more_images():
    fast, slow = estimate_fixed(0.005, 32, 16, 10), estimate_fixed(0.01, 32, 16, 10)
    assert 0 < fast.total < slow.total
    assert estimate_fixed(0.005, 200, 64, 40).total > fast.total
