"""What ``tune`` prints and saves: the candidate table, ``tune.json`` and ``tune.png``
(throughput against p99 per candidate, the bound drawn, the default and the winner marked)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from generator.atomic import atomic_path, write_json


def _num(value: Optional[float], fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def describe_changes(changed: dict) -> str:
    """``{"queue_delay_us": [2000, 500]}`` -> ``queue_delay_us 2000->500``; none: ``(default)``."""
    if not changed:
        return "(default)"
    return ", ".join(f"{k} {_value(old)}->{_value(new)}" for k, (old, new) in changed.items())


def format_table(candidates: Sequence[dict]) -> str:
    """One line per measurement: id, phase, knobs changed, img/s at the bound, its p99, levels."""
    header = ["#", "phase", "knobs changed", "img/s @ bound", "p99 ms", "levels (c:img/s/p99)"]
    body = [[str(c["id"]), c["phase"], describe_changes(c["changed"]),
             _num(c["score"]) if c["score"] is not None else ("error" if c.get("error") else "infeasible"),
             _num(c["p99_ms"]), " ".join(f"{r['concurrency']}:{_num(r['throughput_img_s'])}/{_num(r['p99_ms'], '.0f')}"
                                        for r in c["levels"])]
            for c in candidates]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [header, *body]
    return "\n".join("  ".join(v.ljust(w) if i == 2 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
                     .rstrip() for line in lines)


def summary(result: dict) -> List[str]:
    """The decision in a few lines: chosen vs default at the bound, and why."""
    d = result["decision"]
    default, chosen, ratio = d["default_score"], d["chosen_score"], d.get("ratio")
    chosen_ratio = chosen / default if default and chosen else None
    lines = [f"default: {_num(default)} img/s at p99 <= {result['p99_ms']:g} ms; chosen ({d['chosen']}): "
             f"{_num(chosen)} img/s; chosen/default = {_num(chosen_ratio, '.3f')}"
             + (f" (winner/default {ratio:.3f})" if ratio is not None and d["chosen"] == "default" else ""),
             f"decision: {d['why']}"]
    if result["chosen"]["changed"]:
        lines.append(f"chosen knobs: {describe_changes(result['chosen']['changed'])}")
    return lines


def write_json_report(result: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_json(out_dir / "tune.json", result)


def plot(result: dict, path: Path) -> Path:
    """Throughput against p99, one line per candidate's levels (the default and the search's
    winner drawn bold, their confirmation rounds dotted), the bound dashed, the chosen starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(9.0, 6.0))
    roles = _roles(result)
    for c in result["candidates"]:
        _draw_candidate(ax, c, roles)
    d = result["decision"]
    chosen = [c for c in result["candidates"] if c["knobs"] == result["chosen"]["knobs"]
              and c["score"] == d["chosen_score"] and c["score"] is not None]
    if chosen:
        ax.plot([chosen[-1]["p99_ms"]], [d["chosen_score"]], "*", color="tab:red", markersize=16,
                label=f"chosen: {d['chosen']} ({d['chosen_score']:.1f} img/s)", zorder=5)
    ax.axvline(result["p99_ms"], color="tab:red", linestyle="--", linewidth=1.0,
               label=f"p99 bound {result['p99_ms']:g} ms")
    ax.set(xlabel="p99 latency (ms)", ylabel="throughput (images / s)")
    p99s = [r["p99_ms"] for c in result["candidates"] for r in c["levels"] if r["p99_ms"]]
    if p99s and max(p99s) > 10 * min(p99s):  # a wide spread: log scale, plain numbers
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"tritonforge tune: {result['ensemble']} ({result['repository']})\n" + summary(result)[0],
                 fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _roles(result: dict) -> dict:
    """candidate id -> "default" | "winner" for the two the decision was between (and their rounds)."""
    d = result["decision"]
    roles = {d["default_id"]: "default", d["winner_id"]: "winner"}
    for role, ids in (d.get("rounds") or {}).items():
        roles.update({i: role for i in ids})
    return roles


STYLES = {"default": dict(color="black", linewidth=2.2, marker="s"),
          "winner": dict(color="tab:green", linewidth=2.2, marker="D")}


def _draw_candidate(ax, c: dict, roles: dict) -> None:
    rows = [r for r in c["levels"] if r["p99_ms"] is not None]
    if not rows:
        return
    xs, ys = [r["p99_ms"] for r in rows], [r["throughput_img_s"] for r in rows]
    role = roles.get(c["id"])
    if c["phase"] == "confirm":
        ax.plot(xs, ys, ":", **{**STYLES[role], "linewidth": 1.2, "markersize": 4})
        return
    if role == "default" or (role == "winner" and c["phase"] != "default"):
        ax.plot(xs, ys, label=f"{'default' if role == 'default' else 'search winner'} (#{c['id']}); "
                              "dotted: confirmation rounds", **STYLES[role])
    else:
        ax.plot(xs, ys, color="tab:blue", linewidth=0.8, marker="o", markersize=3, alpha=0.5)
    ax.annotate(str(c["id"]), (xs[-1], ys[-1]), textcoords="offset points", xytext=(3, 3), fontsize=7)
