"""Every detector family under one training budget, measured side by side in one run.

For each family: train on the same synthetic set, then params, GFLOPs, ONNX Runtime CPU
latency at batch 1 and 8 (interleaved rounds across families) and mAP on a held-out set
rendered from another seed.

    python benchmarks/families.py [--families yolo-n,mobilenetv3] [--epochs 30] [--images 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.data.synth import synthesize  # noqa: E402
from generator.demo import DEFAULT, heldout_set  # noqa: E402
from generator.evaluation.coco import evaluate  # noqa: E402
from generator.evaluation.predictors import offline_detector  # noqa: E402
from generator.runners import open_runner  # noqa: E402
from generator.export.onnx_export import export_onnx  # noqa: E402
from generator.models import families  # noqa: E402
from generator.models.checkpoint import load_checkpoint  # noqa: E402
from generator.models.profile import count_params, gflops  # noqa: E402
from generator.report import format_table, ort_latency  # noqa: E402
from generator.training.trainer import TrainConfig, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default=",".join(families()))
    ap.add_argument("--epochs", type=int, default=DEFAULT.epochs)
    ap.add_argument("--images", type=int, default=DEFAULT.train_images)
    ap.add_argument("--imgsz", type=int, default=DEFAULT.imgsz)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    names = [f for f in args.families.split(",") if f]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthesize(tmp / "data", args.images, seed=0, imgsz=args.imgsz, progress=False)
        heldout = heldout_set(tmp / "heldout", DEFAULT.heldout_images, args.imgsz)
        rows, onnx = [], {}
        for name in names:
            t0 = time.time()
            cfg = TrainConfig(data=str(data), model=name, out=str(tmp / f"{name}.pt"), imgsz=args.imgsz,
                              epochs=args.epochs, batch=DEFAULT.batch, lr=DEFAULT.lr)
            train(cfg, echo=lambda line: None, progress=False)
            det = load_checkpoint(tmp / f"{name}.pt")
            onnx[name] = tmp / f"{name}.onnx"
            export_onnx(det, onnx[name])
            runner = open_runner("onnxruntime", onnx[name])
            result = evaluate(heldout, offline_detector(runner, args.imgsz, args.imgsz), progress=False)
            rows.append({"name": name, "params": count_params(det.model), "gflops": round(gflops(det.model, args.imgsz), 3),
                         "map50_95": round(result.map50_95, 4), "map50": round(result.map50, 4),
                         "train_s": round(time.time() - t0, 1)})
            print(f"{name}: trained and evaluated in {rows[-1]['train_s']:.0f} s", flush=True)
        latency = ort_latency(onnx, args.imgsz, args.imgsz)
    for row in rows:
        row["latency_ms_b1"] = round(latency[row["name"]][1], 2)
        row["latency_ms_b8"] = round(latency[row["name"]][8], 2)
    print(f"{args.images} training images, {args.epochs} epochs, {args.imgsz} px; held-out: another seed")
    print(format_table(rows, ("params", "gflops", "latency_ms_b1", "latency_ms_b8", "map50_95", "map50", "train_s")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
