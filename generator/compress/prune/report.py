"""What a pruning did: sizes before and after, each step, layers left alone and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class PruneStep:
    """The model after one pruning step."""

    step: int
    target_ratio: float  # channel pruning ratio scheduled for this step
    channel_ratio: float  # fraction of prunable channels actually removed so far
    params: int
    gflops: float
    seconds: float


@dataclass
class PruneReport:
    """Result of ``prune_model``; ``to_dict`` fits a ``weights_only`` checkpoint and JSON."""

    importance: str
    ratio: float
    global_pruning: bool
    round_to: Optional[int]
    imgsz: int
    params_before: int
    params_after: int
    gflops_before: float
    gflops_after: float
    steps: List[PruneStep] = field(default_factory=list)
    ignored: Dict[str, str] = field(default_factory=dict)  # module name -> why it was left alone
    notes: List[str] = field(default_factory=list)

    @property
    def channel_ratio(self) -> float:
        return self.steps[-1].channel_ratio if self.steps else 0.0

    def to_dict(self) -> Dict[str, Any]:
        """Plain str/int/float/list/dict (fits a ``weights_only`` checkpoint and JSON)."""
        d = asdict(self)
        d["steps"] = [asdict(s) for s in self.steps]
        d["round_to"] = self.round_to or 0
        d["channel_ratio"] = self.channel_ratio
        return d

    def summary(self) -> str:
        """One headline, one line per step, one per reason layers were left alone, notes."""
        lines = [self._headline()]
        for s in self.steps:
            lines.append(f"  step {s.step}: target {s.target_ratio:.3f} removed {s.channel_ratio:.3f} "
                         f"params {s.params:,} GFLOPs {s.gflops:.3f} ({s.seconds:.1f}s)")
        reasons: Dict[str, List[str]] = {}
        for name, why in self.ignored.items():
            reasons.setdefault(why, []).append(name)
        for why, names in reasons.items():
            lines.append(f"  not pruned ({len(names)} layers): {why}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _headline(self) -> str:
        return (f"pruned {self.importance} {'global' if self.global_pruning else 'local'} ratio {self.ratio:g}"
                f"{f' round_to {self.round_to}' if self.round_to else ''} at {self.imgsz}px: "
                f"params {self.params_before:,} -> {self.params_after:,} "
                f"({self.params_after / max(1, self.params_before):.1%}), "
                f"GFLOPs {self.gflops_before:.3f} -> {self.gflops_after:.3f} "
                f"({self.gflops_after / max(1e-12, self.gflops_before):.1%}), "
                f"channels removed {self.channel_ratio:.1%}")
