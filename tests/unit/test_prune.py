"""Structured channel pruning: channels physically removed, the output contract kept, the
surviving channels computing exactly what they computed before, pruned checkpoints and
ONNX exports, and a short prune + fine-tune run."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from generator.compress.config import PruneConfig
from generator.compress.prune.engine import prune_model
from generator.compress.prune.finetune import detection_loss_fn
from generator.compress.prune.importance import IMPORTANCES
from generator.compress.prune.run import prune_and_finetune
from generator.compress.prune_layout import apply_layout, load_pruned, pruned_layout, save_pruned
from generator.errors import UsageError
from generator.export.onnx_export import export_onnx
from generator.models.checkpoint import Detector, build_detector, save_checkpoint
from generator.models.registry import get_family
from generator.models.yolo import STRIDES
from generator.training.loss import DetectionLoss

NC = 3
S = 64  # image size of most tests: three levels of 8x8, 4x4, 2x2
ANCHORS = sum((S // s) ** 2 for s in STRIDES)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is fastest and does not oversubscribe a busy CPU. The
    trainer sets its own thread count (all cores): keep it at one here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "set_num_threads", lambda n: None)
        yield
    torch.set_num_threads(threads)


def _model(family="yolo-n", seed=0):
    torch.manual_seed(seed)
    model = get_family(family).build(num_classes=NC)
    # trained-looking BatchNorms: unequal scales and shifts, non-trivial statistics
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.2
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5
    return model


def _x(batch=1, size=S, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _batches(n=2, batch=2, size=S):
    """Random images with a few boxes each, as ``collate`` makes them."""
    g = torch.Generator().manual_seed(5)
    out = []
    for _ in range(n):
        rows = []
        for i in range(batch):
            xy = torch.rand(2, 2, generator=g) * size * 0.5
            wh = torch.rand(2, 2, generator=g) * size * 0.4 + 8
            boxes = torch.cat([xy, xy + wh], 1)
            cls = torch.randint(0, NC, (2, 1), generator=g).float()
            rows.append(torch.cat([torch.full((2, 1), float(i)), cls, boxes], 1))
        out.append((torch.rand(batch, 3, size, size, generator=g), torch.cat(rows)))
    return out


def _head_outputs(model):
    return [seq[-1] for seq in (*model.head.box, *model.head.cls)]


def _prune(family="yolo-n", importance="magnitude", **kw):
    model = _model(family)
    kw.setdefault("loss_fn", detection_loss_fn(_batches()) if importance == "taylor" else None)
    kw.setdefault("grad_batches", 2)
    report = prune_model(model, _x(), kw.pop("ratio", 0.5), importance, **kw)
    return model, report


# ------------------------------------------------------------------ channels removed, contract kept

@pytest.mark.parametrize("importance", sorted(IMPORTANCES))
def test_each_importance_removes_channels_and_keeps_the_contract(importance):
    model, report = _prune(importance=importance)
    # half the channels of (almost) every layer: parameters and FLOPs fall to about a quarter
    assert 0.4 <= report.channel_ratio <= 0.6
    assert 0.15 < report.params_after / report.params_before < 0.4
    assert 0.15 < report.gflops_after / report.gflops_before < 0.4
    assert sum(p.numel() for p in model.parameters()) == report.params_after
    # the head's output convolutions keep their channels: 4 * reg_max box bins, NC classes
    outs = _head_outputs(model)
    assert [c.out_channels for c in outs] == [64] * 3 + [NC] * 3
    assert all(c.in_channels < 64 for c in outs)  # their inputs were pruned
    assert model.head.dfl.conv.weight.shape == (1, 16, 1, 1)
    model.eval()
    with torch.no_grad():
        assert model(_x(2)).shape == (2, 4 + NC, ANCHORS)
    model.train()
    images, targets = _batches(1)[0]
    loss, _ = DetectionLoss(model.head)(model(images), targets)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def _record_removed_channels(monkeypatch):
    """Record, in original indices, the output channels every pruned layer loses."""
    import torch_pruning as tp

    removed, alive = {}, {}
    original = tp.dependency.Group.prune

    def prune(self, idxs=None, record_history=True):
        if idxs is None:
            for dep, ix in self:
                module = dep.target.module
                if getattr(dep.handler, "__name__", "") != "prune_out_channels" or not isinstance(
                        module, (nn.Conv2d, nn.BatchNorm2d)):
                    continue
                n = module.out_channels if isinstance(module, nn.Conv2d) else module.num_features
                live = alive.setdefault(module, list(range(n)))
                gone = sorted(set(int(i) for i in ix), reverse=True)
                removed.setdefault(module, []).extend(live[i] for i in gone)
                for i in gone:
                    del live[i]
        return original(self, idxs, record_history)

    monkeypatch.setattr(tp.dependency.Group, "prune", prune)
    return removed


@pytest.mark.parametrize("family,global_pruning", [
    ("yolo-n", False), ("yolo-n", True), ("yolo-n-c3f", False), ("mobilenetv3", True), ("shufflenetv2", False),
])
def test_pruning_removes_exactly_the_channels_it_claims(family, global_pruning, monkeypatch):
    """Zero, in an unpruned copy, every channel the pruner removes (BatchNorm / bias-less
    conv outputs -> 0, and act(0) = 0): that copy and the pruned model must agree, which
    checks the index bookkeeping through concats, splits, residual adds, SE gates and (for
    ShuffleNetV2) that no channel crosses the shuffle."""
    model = _model(family)
    reference = copy.deepcopy(model)
    names = {m: n for n, m in model.named_modules()}
    removed = _record_removed_channels(monkeypatch)
    prune_model(model, _x(), 0.4, "magnitude", global_pruning, round_to=None, steps=2)
    ref_modules = dict(reference.named_modules())
    assert removed
    for module, idxs in removed.items():
        target = ref_modules[names[module]]
        with torch.no_grad():
            target.weight[idxs] = 0
            if target.bias is not None:
                target.bias[idxs] = 0
    x = _x(2)
    with torch.no_grad():
        want, got = reference.eval()(x), model.eval()(x)
    assert got.shape == want.shape == (2, 4 + NC, ANCHORS)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), float((got - want).abs().max())


def test_shufflenet_keeps_its_trunk_and_says_so():
    model, report = _prune("shufflenetv2", "lamp", global_pruning=True)
    unit = model.backbone.stage3[1]
    assert unit.branch2[2].conv.out_channels == 116  # feeds the shuffle: untouched
    assert unit.branch2[0].conv.out_channels < 116  # inside the branch: pruned
    assert "backbone.stage3.1.branch2.2" in report.ignored and "shuffle" in report.ignored["backbone.stage3.1.branch2.2"]
    assert any("ShuffleNetV2" in n for n in report.notes)
    assert report.params_after < 0.5 * report.params_before
    with torch.no_grad():
        assert model.eval()(_x()).shape == (1, 4 + NC, ANCHORS)


# ------------------------------------------------------------------ options

def test_round_to_8_gives_multiples_of_8():
    before = pruned_layout(_model())
    model, report = _prune(ratio=0.3, round_to=8, steps=2)
    changed = {n: s for n, s in pruned_layout(model).items() if s["out"] != before[n]["out"]}
    assert len(changed) > 50
    assert all(s["out"] % 8 == 0 for s in changed.values()), changed
    assert report.steps[0].target_ratio == pytest.approx(0.15)


def test_global_ranking_thins_layers_unevenly_local_does_not():
    base = pruned_layout(_model())

    def kept(model):
        return [s["out"] / base[n]["out"] for n, s in pruned_layout(model).items()
                if n.endswith(".conv") and base[n]["out"] > 1 and "head" not in n]

    local, rl = _prune(importance="lamp", global_pruning=False)
    glob, rg = _prune(importance="lamp", global_pruning=True)
    assert max(kept(local)) - min(kept(local)) < 0.1
    assert max(kept(glob)) - min(kept(glob)) > 0.3
    assert min(kept(glob)) >= 0.1 - 1e-6  # max_layer_ratio 0.9: no layer is emptied
    assert rl.global_pruning is False and rg.global_pruning is True
    assert 0.4 < rg.channel_ratio < 0.65


def test_iterative_steps_report_each_step_and_call_back_between_them():
    calls = []
    model, report = _prune(steps=3, between_steps=lambda m, k: calls.append(k))
    assert calls == [1, 2]
    assert [s.step for s in report.steps] == [1, 2, 3]
    removed = [s.channel_ratio for s in report.steps]
    assert removed == sorted(removed) and removed[0] == pytest.approx(1 / 6, abs=0.05)
    assert report.steps[-1].params == report.params_after
    text = report.summary()
    assert "step 3" in text and "output contract" in text


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.2])
def test_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(UsageError, match=r"--ratio .* must be in \(0, 1\)"):
        prune_model(_model(), _x(), ratio)


def test_bad_importance_and_missing_gradients_are_refused():
    with pytest.raises(UsageError, match="unknown pruning importance 'l1'; choose from magnitude, bn-scale, taylor, lamp"):
        prune_model(_model(), _x(), 0.5, "l1")
    with pytest.raises(UsageError, match="'taylor' needs gradients"):
        prune_model(_model(), _x(), 0.5, "taylor")
    with pytest.raises(UsageError, match="--steps must be >= 1"):
        prune_model(_model(), _x(), 0.5, steps=0)


# ------------------------------------------------------------------ checkpoints and ONNX

@pytest.fixture(scope="module")
def pruned_det(tmp_path_factory):
    model, _ = _prune(ratio=0.5, round_to=8)
    det = Detector(model.eval(), "yolo-n", [f"c{i}" for i in range(NC)], S)
    path = tmp_path_factory.mktemp("pruned") / "pruned.pt"
    save_pruned(det, path)
    return det, path


def test_pruned_checkpoint_round_trip_gives_identical_outputs(pruned_det):
    det, path = pruned_det
    payload = torch.load(path, weights_only=True)
    assert payload["options"]["pruned"]["backbone.stem.conv"] == {"in": 3, "out": 8, "groups": 1}
    back = load_pruned(path)
    assert back.family == "yolo-n" and back.names == det.names and back.imgsz == S
    assert pruned_layout(back.model) == pruned_layout(det.model)
    x = _x(2)
    with torch.no_grad():
        assert torch.equal(back.model.eval()(x), det.model(x))


def test_load_pruned_reads_plain_checkpoints_and_rejects_foreign_layouts(tmp_path):
    plain = build_detector("yolo-n", NC, S)
    save_checkpoint(plain, tmp_path / "plain.pt")
    back = load_pruned(tmp_path / "plain.pt")
    assert pruned_layout(back.model) == pruned_layout(plain.model)
    model = _model()
    with pytest.raises(UsageError, match="layer 'backbone.nothing'"):
        apply_layout(model, {"backbone.nothing": {"out": 8}})
    with pytest.raises(UsageError, match="entry for 'backbone.stem.conv' is malformed"):
        apply_layout(model, {"backbone.stem.conv": {"in": 3}})
    with pytest.raises(UsageError, match="entry for 'backbone.stem.conv' is impossible"):
        apply_layout(model, {"backbone.stem.conv": {"out": 8}})
    payload = torch.load(tmp_path / "plain.pt", weights_only=True)
    payload["options"]["pruned"] = {"backbone.stem.conv": {"in": 3, "out": 8, "groups": 1}}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(UsageError, match="bad.pt: weights do not fit family 'yolo-n'"):
        load_pruned(tmp_path / "bad.pt")


def test_pruned_model_exports_to_onnx_and_runs_at_batch_1_and_4(pruned_det, tmp_path):
    det, _ = pruned_det
    report = export_onnx(det, tmp_path / "pruned.onnx", simplify=False, tolerance=1e-3)
    assert report.max_abs_diff < 1e-3
    sess = ort.InferenceSession(str(tmp_path / "pruned.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = _x(batch, seed=batch)
        got = sess.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            want = det.model.eval()(x).numpy()
        assert got.shape == (batch, 4 + NC, ANCHORS)
        assert np.abs(got - want).max() < 1e-3


# ------------------------------------------------------------------ prune + fine-tune

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from generator.data.synth import synthesize

    root = tmp_path_factory.mktemp("prune_data")
    data = synthesize(root / "shapes", 16, seed=0, imgsz=96, classes=2, progress=False)
    det = build_detector("yolo-n", 2, 96, ["circle", "rectangle"])
    ckpt = root / "base.pt"
    save_checkpoint(det, ckpt)
    return data, ckpt


def test_prune_and_finetune_writes_a_checkpoint_that_reloads_and_evaluates(tiny, tmp_path):
    from generator.data.dataset import load_dataset
    from generator.training.trainer import validate

    data, ckpt = tiny
    calls = []

    def extra_loss(model, images, raw, targets):
        calls.append(images.shape[0])
        return sum(r.float().pow(2).mean() for r in raw) * 0.0

    out = tmp_path / "pruned.pt"
    logs = []
    result = prune_and_finetune(PruneConfig(ckpt, data, 0.5, "taylor", global_pruning=False, round_to=8, steps=2,
                                            finetune_epochs=1, out=out, batch=8, step_iters=1, grad_batches=1),
                                extra_loss=extra_loss, echo=logs.append, progress=False)
    assert out.is_file() and not out.with_name(out.name + ".tmp").exists()
    assert result["checkpoint"] == str(out)
    assert set(result["metrics"]) == {"before", "pruned", "finetuned"}
    assert len(calls) == 2  # one recovery batch between the steps, one fine-tuning batch
    assert [h["epoch"] for h in result["history"]] == [1]
    assert result["report"]["params_after"] < 0.4 * result["report"]["params_before"]
    assert any("recovered 1 batches after step 1/2" in line for line in logs)
    det = load_pruned(out)
    assert det.names == ["circle", "rectangle"] and det.imgsz == 96
    assert sum(p.numel() for p in det.model.parameters()) == result["report"]["params_after"]
    extra = torch.load(out, weights_only=True)["extra"]
    assert extra["prune"]["importance"] == "taylor" and "train_state" in extra
    metrics = validate(det.model, load_dataset(data, "val"), 96, progress=False)
    assert 0.0 <= metrics["map50"] <= 1.0


def test_prune_and_finetune_distils_from_a_teacher_and_can_skip_finetuning(tiny, tmp_path, monkeypatch):
    from generator.compress.distill import ObjectnessScaledKD

    data, ckpt = tiny
    out = tmp_path / "kd.pt"
    calls = []
    forward = ObjectnessScaledKD.forward

    def counted(self, *args, **kwargs):
        calls.append(len(self.adapters))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ObjectnessScaledKD, "forward", counted)
    result = prune_and_finetune(PruneConfig(ckpt, data, 0.3, "lamp", global_pruning=True, steps=2, step_iters=1,
                                            finetune_epochs=0, out=out, teacher=ckpt, evaluate=False),
                                echo=lambda _: None, progress=False)
    assert result["metrics"] == {} and result["history"] == []
    assert calls == [3]  # the recovery batch between the two steps, with the neck adapters
    det = load_pruned(out)
    assert sum(p.numel() for p in det.model.parameters()) == result["report"]["params_after"]
    assert torch.load(out, weights_only=True)["extra"]["prune_settings"]["teacher"] == str(ckpt)


def test_prune_and_finetune_checks_its_arguments(tiny, tmp_path):
    data, ckpt = tiny
    with pytest.raises(UsageError, match="must be in \\(0, 1\\)"):
        prune_and_finetune(PruneConfig(ckpt, data, 1.0, out=tmp_path / "x.pt"), progress=False)
    with pytest.raises(UsageError, match="folder of --out does not exist"):
        prune_and_finetune(PruneConfig(ckpt, data, 0.5, out=tmp_path / "no" / "x.pt"), progress=False)
    with pytest.raises(UsageError, match="checkpoint not found"):
        prune_and_finetune(PruneConfig(tmp_path / "missing.pt", data, 0.5, out=tmp_path / "x.pt"), progress=False)
