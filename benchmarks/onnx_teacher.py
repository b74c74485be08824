"""Distillation from an ONNX teacher (an Ultralytics export, say) vs plain training, measured side by side in one run.

The student trains twice with the same seed, epochs, data and size: plainly (``tritonforge
train``) and with knowledge distillation from the ONNX teacher (``tritonforge distill``,
compress/distill_onnx.py). Both students and the teacher itself (on ONNX Runtime) are then
scored on a held-out dataset; the table gives mAP50-95 / mAP50 and the KD gain.

    python benchmarks/onnx_teacher.py --teacher yolov8n.onnx --data DATA --heldout HELDOUT
        [--epochs 15] [--student mobilenetv3] [--imgsz 256] [--heldout-split all] [--json out.json]

``--heldout-split all`` (the default) scores on every image of the held-out dataset, its
train and val splits merged (all of it is unseen when it was rendered from another seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.compress.config import DistillConfig  # noqa: E402
from generator.compress.distill import run_distill  # noqa: E402
from generator.demo import DEFAULT  # noqa: E402
from generator.evaluation.run import run_eval  # noqa: E402
from generator.report import format_table  # noqa: E402
from generator.training.trainer import TrainConfig, train  # noqa: E402

SPLITS = ("all", "val", "train")


def heldout_spec(heldout: Path, split: str, tmp: Path):
    """(data spec, split) for ``run_eval``: for ``all``, a data YAML whose ``val`` lists both splits."""
    if split != "all":
        return heldout, split
    import yaml

    from generator.data.yolo import find_data_yaml, read_yaml

    source = find_data_yaml(Path(heldout))
    cfg = read_yaml(source)
    root = Path(str(cfg.get("path") or source.parent))
    root = root if root.is_absolute() else source.parent / root
    merged = [item for key in ("train", "val") for item in
              (cfg[key] if isinstance(cfg.get(key), list) else [cfg.get(key)]) if item]
    spec = tmp / "heldout.yaml"
    spec.write_text(yaml.safe_dump({"path": str(root), "train": list(merged), "val": list(merged), "names": cfg["names"]}))
    return spec, "val"


def score(result) -> dict:
    return {"map50_95": round(result.map50_95, 4), "map50": round(result.map50, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", type=Path, required=True, help="detector ONNX (any supported output layout)")
    ap.add_argument("--data", required=True, help="training dataset (YOLO data YAML / folder, or COCO JSON)")
    ap.add_argument("--heldout", type=Path, required=True, help="held-out dataset the three models are scored on")
    ap.add_argument("--heldout-split", choices=SPLITS, default="all")
    ap.add_argument("--epochs", type=int, default=DEFAULT.student_epochs)
    ap.add_argument("--student", default=DEFAULT.student)
    ap.add_argument("--imgsz", type=int, default=DEFAULT.imgsz, help="must match a static teacher input size")
    ap.add_argument("--batch", type=int, default=DEFAULT.batch)
    ap.add_argument("--lr", type=float, default=DEFAULT.lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep the two student checkpoints in")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = args.keep or tmp
        out.mkdir(parents=True, exist_ok=True)
        data, split = heldout_spec(args.heldout, args.heldout_split, tmp)

        t0 = time.time()
        teacher = score(run_eval(data, split, onnx=args.teacher, progress=False))
        rows = [{"name": "teacher", **teacher, "train_s": None, "eval_s": round(time.time() - t0, 1),
                 "note": f"{args.teacher.name} on ONNX Runtime"}]
        print(f"teacher: evaluated in {rows[-1]['eval_s']:.0f} s", flush=True)

        plain = out / f"{args.student}.pt"
        t0 = time.time()
        train(TrainConfig(data=args.data, model=args.student, out=str(plain), imgsz=args.imgsz, epochs=args.epochs,
                          batch=args.batch, lr=args.lr, seed=args.seed), echo=lambda line: None, progress=False)
        train_s = round(time.time() - t0, 1)
        t0 = time.time()
        rows.append({"name": "student", **score(run_eval(data, split, checkpoint=plain, progress=False)),
                     "train_s": train_s, "eval_s": round(time.time() - t0, 1), "note": f"{args.student}, plain"})
        print(f"student: trained in {train_s:.0f} s", flush=True)

        kd = out / f"{args.student}_kd.pt"
        t0 = time.time()
        run_distill(DistillConfig(teacher=args.teacher, student=args.student, data=args.data, out=kd,
                                  epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, lr=args.lr, seed=args.seed),
                    echo=lambda line: None, progress=False)
        train_s = round(time.time() - t0, 1)
        t0 = time.time()
        rows.append({"name": "student_kd", **score(run_eval(data, split, checkpoint=kd, progress=False)),
                     "train_s": train_s, "eval_s": round(time.time() - t0, 1), "note": f"{args.student}, KD from teacher"})
        print(f"student_kd: trained in {train_s:.0f} s", flush=True)

    student, distilled = rows[1], rows[2]
    gain = {metric: round(distilled[metric] - student[metric], 4) for metric in ("map50_95", "map50")}
    for metric in ("map50_95", "map50"):
        gain[f"{metric}_ratio"] = round(distilled[metric] / student[metric], 3) if student[metric] else None
        gap = teacher[metric] - student[metric]
        # share of the teacher-student gap that KD closed (only meaningful when the teacher is ahead)
        gain[f"{metric}_gap_closed"] = round(gain[metric] / gap, 3) if gap > 0 else None
    print(f"student {args.student}, {args.epochs} epochs at {args.imgsz} px on {args.data}, seed {args.seed}; "
          f"held-out: {args.heldout} ({args.heldout_split})")
    print(format_table(rows, ("map50_95", "map50", "train_s", "eval_s")))
    ratio = gain["map50_95_ratio"]
    print(f"KD gain: mAP50-95 {gain['map50_95']:+.4f} ({'-' if ratio is None else f'x{ratio:.2f}'}), "
          f"mAP50 {gain['map50']:+.4f}; teacher - student: mAP50-95 {teacher['map50_95'] - student['map50_95']:+.4f}")
    if args.json:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("json", "keep")}
        args.json.write_text(json.dumps({"config": config, "rows": rows, "gain": gain}, indent=2))


if __name__ == "__main__":
    main()
