"""Options of the compression steps: defaults defined once, validated with messages naming the flag."""

import pytest

from generator.compress.config import (QUANTIZE_TARGETS, DistillConfig, KDWeights, PruneConfig, QuantizeConfig,
                                       quantize_target_help)
from generator.compress.prune import importance as imp
from generator.errors import UsageError


def test_quantize_target_maps_to_activation_type_and_per_channel():
    assert QuantizeConfig.for_target("cpu") == QuantizeConfig(activation_type="uint8", per_channel=False)
    trt = QuantizeConfig.for_target("tensorrt", method="minmax")
    assert (trt.activation_type, trt.per_channel, trt.method) == ("int8", True, "minmax")
    assert QuantizeConfig.for_target("cpu", per_channel=True).per_channel
    assert set(QUANTIZE_TARGETS) == {"cpu", "tensorrt"} and "tensorrt: symmetric int8" in quantize_target_help()
    with pytest.raises(UsageError, match="unknown --target 'gpu'; choose one of: cpu, tensorrt"):
        QuantizeConfig.for_target("gpu")


@pytest.mark.parametrize("field,value,message", [
    ("method", "kl", "unknown calibration method 'kl'; choose one of: entropy, minmax, percentile"),
    ("activation_type", "int4", "unknown activation type 'int4'; choose one of: uint8, int8"),
    ("weight_type", "fp8", "unknown weight type 'fp8'"),
])
def test_quantize_config_rejects_unknown_names(field, value, message):
    with pytest.raises(UsageError, match=message):
        QuantizeConfig(**{field: value})


def test_quantize_config_records_its_options():
    cfg = QuantizeConfig(method="minmax", exclude=["/a/*"], op_types=["Conv"])
    assert cfg.exclude == ("/a/*",) and cfg.op_types == ("Conv",)
    assert cfg.options(10) == {"method": "minmax", "per_channel": False, "activation_type": "uint8",
                               "weight_type": "int8", "keep_head_float": True, "exclude": ["/a/*"],
                               "op_types": ["Conv"], "calibration_images": 10, "select": "op-type",
                               "runtime": None, "max_drop": None}


@pytest.mark.parametrize("kwargs,message", [
    ({"ratio": 0.0}, r"--ratio is the fraction of channels to remove and must be in \(0, 1\), got 0.0"),
    ({"ratio": 1.5}, r"must be in \(0, 1\)"),
    ({"steps": 0}, "--steps must be >= 1, got 0"),
    ({"round_to": 0}, "--round-to must be >= 1, got 0"),
    ({"importance": "l1"}, "unknown pruning importance 'l1'; choose from magnitude, bn-scale, taylor, lamp"),
    ({"finetune_epochs": -1}, "--finetune-epochs and the recovery iterations must be >= 0"),
    ({"batch": 0}, "--batch >= 1"),
])
def test_prune_config_validates_with_the_flag_names(kwargs, message):
    args = {"checkpoint": "m.pt", "data": "d.yaml", "ratio": 0.5, **kwargs}
    with pytest.raises(UsageError, match=message):
        PruneConfig(**args)


def test_prune_config_defaults_and_paths():
    cfg = PruneConfig("m.pt", "d.yaml", 0.5, teacher="t.pt")
    assert (cfg.importance, cfg.steps, cfg.finetune_epochs, cfg.lr, cfg.out.name) == (
        "magnitude", 1, 10, 0.002, "pruned.pt")
    assert cfg.teacher.name == "t.pt" and cfg.checkpoint.name == "m.pt"


def test_importance_registry_rejects_duplicates_and_knows_gradients():
    assert imp.importance_names() == ["magnitude", "bn-scale", "taylor", "lamp"]
    assert imp.needs_gradients("taylor") and not imp.needs_gradients("lamp")
    with pytest.raises(ValueError, match="'lamp' is already registered"):
        imp.register_importance("lamp", lambda: None)


def test_distill_config_validates():
    cfg = DistillConfig("t.pt", "yolo-n", "d.yaml", "s.pt")
    assert (cfg.epochs, cfg.batch, cfg.lr, cfg.weights) == (30, 8, 0.01, KDWeights())
    with pytest.raises(UsageError, match="--epochs and --batch must be >= 1"):
        DistillConfig("t.pt", "yolo-n", "d.yaml", "s.pt", epochs=0)
    with pytest.raises(UsageError, match="--imgsz must be a multiple of 32, got 100"):
        DistillConfig("t.pt", "yolo-n", "d.yaml", "s.pt", imgsz=100)


def test_config_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, generator.compress.config, generator.compress.quantize; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'torch_pruning', 'cv2') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
