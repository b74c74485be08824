"""``tritonforge tune``: measure the repository as it is, search its knobs within the budget,
confirm the winner against the default in interleaved rounds, write the result back.

The default (the repository's own configs) is always the first candidate and the decision
keeps it unless the winner beats it by the margin, so the result is never worse than it as
measured here. Nothing is written to the repository until the end, and then atomically.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from generator.errors import ServerError, UsageError
from generator.tune.knobs import Knobs, changed, configure, inconsistencies, read_knobs
from generator.tune.live import ApplyError, LiveServer
from generator.tune.measure import Candidate, measure_levels, score, warm_up
from generator.tune.repository import TuneRepository, read_repository
from generator.tune.search import Budget, coordinate_descent
from generator.tune.select import decide, round_order
from generator.tune.space import KnobSpace, build_space


@dataclass
class TuneOptions:
    """What ``tune`` is asked; ``validate`` names the flag of a bad value."""

    p99_ms: float = 250.0
    budget_min: float = 5.0
    levels: Tuple[int, ...] = (1, 4, 8, 16)
    duration_s: float = 4.0
    margin: float = 0.03
    rounds: int = 2
    knobs: Optional[Tuple[str, ...]] = None
    images: Optional[Path] = None
    tritonserver: Optional[str] = None
    backend_dir: Optional[str] = None

    def validate(self) -> "TuneOptions":
        from generator.repository.options import raise_failed

        raise_failed([
            (self.p99_ms > 0, f"--p99-ms must be > 0, got {self.p99_ms:g}"),
            (self.budget_min > 0, f"--budget must be > 0 minutes, got {self.budget_min:g}"),
            (self.duration_s > 0, f"--duration must be > 0 seconds, got {self.duration_s:g}"),
            (bool(self.levels) and all(c >= 1 for c in self.levels),
             f"--concurrency: levels must be >= 1, got {self.levels}"),
            (self.margin >= 0, f"--margin must be >= 0 percent, got {100 * self.margin:g}"),
            (self.rounds >= 1, f"--rounds must be >= 1, got {self.rounds}"),
            (self.budget_min * 60 >= self.duration_s, f"--budget {self.budget_min:g} min cannot measure even one "
                                                      f"--duration {self.duration_s:g} s level of the default"),
        ])
        return self

    def command(self, repository: Path) -> str:
        """The command that reproduces this run (the repository by folder name: no machine paths)."""
        knobs = f" --knobs {','.join(self.knobs)}" if self.knobs else ""
        return (f"tritonforge tune {Path(repository).name} --p99-ms {self.p99_ms:g} --budget {self.budget_min:g} "
                f"--concurrency {','.join(map(str, self.levels))} --duration {self.duration_s:g} "
                f"--margin {100 * self.margin:g} --rounds {self.rounds}{knobs}")


class Session:
    """Candidates measured on one live server, with the budget and the progress bar."""

    def __init__(self, repo: TuneRepository, opts: TuneOptions, live: LiveServer, images: Sequence[bytes],
                 budget: Budget, tick: Callable[[str], None]):
        self.repo, self.opts, self.live, self.images = repo, opts, live, images
        self.budget, self.tick = budget, tick
        self.default_knobs = read_knobs(repo)
        self.candidates: List[Candidate] = []
        self.skipped: List[dict] = []
        self.restarts = 0

    def evaluate(self, knobs: Knobs, phase: str = "search") -> Optional[Candidate]:
        """Apply and measure ``knobs``; None (and a note) when its configs are inconsistent."""
        configs = configure(self.repo, knobs)
        problems = inconsistencies(self.repo, configs)
        if problems:
            self.skipped.append({"knobs": knobs, "why": problems})
            return None
        c = Candidate(len(self.candidates), dict(knobs), changed(self.default_knobs, knobs), phase)
        begin = time.monotonic()
        try:
            c.apply_s = round(self.live.apply(configs), 2)
            self._warm_up(int(knobs.get("max_batch_size", 1)))
            c.levels = measure_levels(self.live.url, self.repo.ensemble, self.images, self.opts.levels,
                                      self.opts.duration_s, self.opts.p99_ms, tick=lambda _: self.tick(""))
            c.score, c.p99_ms = score(c.levels, self.opts.p99_ms)
        except ApplyError as exc:
            c.error = str(exc)
            self._recover()
        c.seconds = round(time.monotonic() - begin, 2)
        if c.error is None:
            self.budget.costs.append(c.seconds)
        self.candidates.append(c)
        self.tick(f"#{c.id} {'-' if c.score is None else f'{c.score:.1f}'} img/s")
        return c

    def _warm_up(self, max_batch: int) -> None:
        from client import DetectionClientError

        try:
            warm_up(self.live.url, self.repo.ensemble, self.images, max_batch)
        except DetectionClientError as exc:
            raise ApplyError(f"warm-up request failed: {exc}") from None

    def _recover(self) -> None:
        self.restarts += 1
        self.live.recover()


def _check_default(default: Candidate, session: Session, opts: TuneOptions) -> None:
    """A default that fails requests or alone overruns the budget ends the run (exit 2 / 4)."""
    errors = [r for r in default.levels if r["errors"]]
    if default.error or errors:
        why = default.error or errors[0].get("first_error")
        raise ServerError(f"{session.repo.path}: the repository's own configuration fails requests: {why}")
    budget = session.budget
    if budget.elapsed() > budget.seconds:
        per = default.seconds
        need = session.live.start_s + per * (2 + 2 * opts.rounds)
        raise UsageError(f"--budget {opts.budget_min:g} min is too small: measuring the default configuration "
                         f"alone took {per:.0f} s (after {session.live.start_s:.0f} s to start the server); one "
                         f"candidate costs about that, so give at least --budget {math.ceil(need / 6) / 10:g}")


def confirm(session: Session, default: Candidate, winner: Candidate, opts: TuneOptions) -> dict:
    """The winner against the default in interleaved rounds (none when the default won the search)."""
    if winner is default:
        return {"chosen": "default", "default_score": default.score, "winner_score": default.score, "ratio": 1.0,
                "why": "no candidate scored higher than the default in the search", "rounds": []}
    scores: Dict[str, list] = {"default": [], "winner": []}
    ids: Dict[str, list] = {"default": [], "winner": []}
    for who in round_order(opts.rounds):
        c = session.evaluate((default if who == "default" else winner).knobs, phase="confirm")
        scores[who].append(c.score)
        ids[who].append(c.id)
    return {**decide(scores["default"], scores["winner"], opts.margin), "rounds": ids,
            "round_scores": scores}


def _progress(budget: Budget, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=round(budget.seconds), unit="s", desc="tune", disable=not enabled,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s budget{postfix}")


def search(repo: TuneRepository, opts: TuneOptions, space: KnobSpace, images: Sequence[bytes],
           progress: bool = True) -> dict:
    """Start the server, measure, search, confirm: the result without the outputs written."""
    live = LiveServer(repo, opts.tritonserver, opts.backend_dir).check()
    budget = Budget(opts.budget_min * 60, reserve_runs=2 * opts.rounds)
    with _progress(budget, progress) as bar, live:
        def tick(note: str) -> None:
            bar.n = min(budget.elapsed(), bar.total)
            if note:
                bar.set_postfix_str(note, refresh=False)
            bar.refresh()

        session = Session(repo, opts, live, images, budget, tick)
        default = session.evaluate(session.default_knobs, phase="default")
        _check_default(default, session, opts)
        winner = coordinate_descent(space, default, session.evaluate, budget)
        decision = confirm(session, default, winner, opts)
        tick("done")
    return _result(repo, opts, space, session, default, winner, decision, live.start_s, budget)


def _result(repo, opts, space, session, default, winner, decision, start_s, budget) -> dict:
    chosen = winner if decision["chosen"] == "winner" else default
    chosen_score = decision["winner_score"] if decision["chosen"] == "winner" else decision["default_score"]
    return {
        "repository": repo.path.name, "target": repo.target, "ensemble": repo.ensemble,
        "command": opts.command(repo.path), "p99_ms": opts.p99_ms, "concurrency": list(opts.levels),
        "duration_s": opts.duration_s, "budget_min": opts.budget_min, "margin": opts.margin, "rounds": opts.rounds,
        "server": {"start_s": round(start_s, 2), "restarts": session.restarts,
                   "apply": "a fresh server per candidate on a private copy of the repository (reloading "
                            "models in place aborts Triton 2.51 once the ensemble has served requests)"},
        "knobs": {"searched": space.knobs, "not_searched": space.notes, "runtimes": list(space.runtimes)},
        "default": {"id": default.id, "knobs": default.knobs, "score_img_s": default.score},
        "candidates": [c.to_json() for c in session.candidates], "skipped": session.skipped,
        "decision": {**decision, "default_id": default.id, "winner_id": winner.id, "chosen_score": chosen_score},
        "chosen": {"id": chosen.id, "knobs": chosen.knobs, "changed": changed(default.knobs, chosen.knobs)},
        "budget": {"seconds": budget.seconds, "spent_s": round(budget.elapsed(), 1),
                   "candidate_cost_s": round(budget.estimate(), 1)},
    }


def tune(repository: Path, opts: TuneOptions, out: Optional[Path] = None, dry_run: bool = False,
         progress: bool = True) -> dict:
    """The whole command: search, then tune.json / tune.png (into ``out`` or the repository)
    and, unless ``dry_run`` or the default stays, the tuned configs."""
    from generator.loadtest import load_images
    from generator.tune.report import plot, write_json_report

    opts.validate()
    repo = read_repository(repository)
    space = build_space(repo, opts.knobs)
    images = load_images(opts.images)
    result = search(repo, opts, space, images, progress=progress)
    result["dry_run"] = dry_run
    result["written"] = [] if dry_run else _write_back(repo, result)
    out_dir = Path(out) if out is not None else repo.path
    write_json_report(result, out_dir)
    plot(result, out_dir / "tune.png")
    return result


def _write_back(repo: TuneRepository, result: dict) -> List[str]:
    """The chosen configuration into the repository (nothing when the default stays)."""
    from generator.tune.write import tuned_files, write_files

    chosen, default = _knobs(result["chosen"]["knobs"]), _knobs(result["default"]["knobs"])
    if chosen == default:
        return []
    d = result["decision"]
    record = {"p99_ms": result["p99_ms"], "ratio": round(d["chosen_score"] / d["default_score"], 3)
              if d["default_score"] else None, "command": result["command"]}
    files = tuned_files(repo, configure(repo, chosen), chosen, default, record)
    return [str(p.relative_to(repo.path)) for p in write_files(files)]


def _knobs(knobs: dict) -> Knobs:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
