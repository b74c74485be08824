"""The capacity model (generator.deploy.capacity) on load.json rows as bench --url writes them."""

from __future__ import annotations

import json

import pytest

from generator.deploy.capacity import format_plan, plan_capacity, read_load
from generator.errors import UsageError


def row(c, img_s, p99, queue, errors=0):
    return {"concurrency": c, "requests": 200, "errors": errors, "throughput_img_s": img_s, "p99_ms": p99,
            "queue_us_per_request": queue}


ROWS = [row(1, 30.0, 40.0, 800.0), row(2, 55.0, 48.0, 2100.0), row(4, 70.0, 90.0, 6000.0), row(8, 72.0, 180.0, 17000.0)]


def test_best_level_under_the_bound_gives_replicas_and_target():
    plan = plan_capacity(ROWS, rate=200, p99_ms=100)
    assert plan.concurrency == 4 and plan.capacity_img_s == pytest.approx(56.0)
    assert plan.replicas == 4 and plan.max_replicas == 8  # ceil(200 / 56) = 4
    assert plan.queue_target_us == 6000.0
    tighter = plan_capacity(ROWS, rate=200, p99_ms=50, headroom=1.0)
    assert (tighter.concurrency, tighter.replicas, tighter.queue_target_us) == (2, 4, 2100.0)  # ceil(200/55)


def test_exact_multiple_and_minimum_of_one():
    assert plan_capacity([row(1, 100.0, 10.0, 50.0)], rate=80, p99_ms=20).replicas == 1
    assert plan_capacity([row(1, 100.0, 10.0, 50.0)], rate=160, p99_ms=20).replicas == 2
    assert plan_capacity([row(1, 100.0, 10.0, 50.0)], rate=1, p99_ms=20).replicas == 1


def test_levels_with_errors_or_without_p99_do_not_count():
    rows = [row(1, 30.0, 20.0, 500.0), row(2, 90.0, 25.0, 900.0, errors=3), row(4, 0.0, None, None)]
    plan = plan_capacity(rows, rate=10, p99_ms=50)
    assert plan.concurrency == 1


def test_refusals_name_the_problem():
    with pytest.raises(UsageError, match=r"best p99 is 40.0 ms at concurrency 1"):
        plan_capacity(ROWS, rate=10, p99_ms=5)
    with pytest.raises(UsageError, match="rerun tritonforge bench --url"):
        plan_capacity([row(1, 30.0, 10.0, None)], rate=10, p99_ms=50)
    with pytest.raises(UsageError, match="--headroom"):
        plan_capacity(ROWS, rate=10, p99_ms=50, headroom=1.5)
    with pytest.raises(UsageError, match="must be > 0"):
        plan_capacity(ROWS, rate=0, p99_ms=50)


def test_read_load_file_or_folder(tmp_path):
    (tmp_path / "load.json").write_text(json.dumps({"levels": ROWS}))
    assert read_load(tmp_path) == read_load(tmp_path / "load.json") == ROWS
    (tmp_path / "bad.json").write_text(json.dumps({"levels": [{"concurrency": 1}]}))
    with pytest.raises(UsageError, match="level 1 lacks throughput_img_s, p99_ms"):
        read_load(tmp_path / "bad.json")
    with pytest.raises(UsageError, match="not found"):
        read_load(tmp_path / "missing.json")


def test_table_marks_the_chosen_level():
    text = format_plan(ROWS, plan_capacity(ROWS, rate=200, p99_ms=100))
    chosen = [line for line in text.splitlines() if line.startswith("=>")]
    assert len(chosen) == 1 and chosen[0].split()[1] == "4"
    assert "replicas: ceil(200 / 56.0) = 4" in text
