"""The GPU preprocess: the CUDA letterbox kernel, its CPU reference, DLPack, preprocess_gpu.

Without a GPU: nvcc compiles the kernel per arch; the same source built for the host
(``-DTRITONFORGE_HOST_REFERENCE``) is checked against the CPU preprocess; the DLPack
producer is checked over numpy memory; preprocess_gpu runs its CPU fallback and, with
the host reference standing in for the GPU, its GPU code path. ``gpu`` tests run the
kernel itself (pycuda) and are skipped without one.
"""

import gc
import json
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

from generator import resources
from generator.export import cuda_tools as tools
from generator.runtime import cuda_letterbox as cl
from generator.runtime import dlpack, imaging, letterbox

KERNEL = resources.templates_dir() / "cuda" / "letterbox.cu"
TOL = 1.0 / 255.0


# --------------------------------------------------------------------------------------------
# helpers


def _nvcc():
    return tools.find_nvcc()


def _nvcc_version(nvcc):
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if "release" in line]
    return "nvcc " + lines[0].split("release", 1)[1].strip().rstrip(",") if lines else "this nvcc"


def _bgr(h, w, seed=0):
    """Noise over a smooth scene: both the worst case for rounding and something image-like."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) * 7) % 256], axis=2)
    noise = rng.integers(-40, 41, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _cpu_letterbox(bgr, out_h, out_w):
    """The CPU preprocess on the image decode_image would give (RGB)."""
    return imaging.letterbox(np.ascontiguousarray(bgr[:, :, ::-1]), out_h, out_w)


def _diff(a, b):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()) if d.size else 0.0, int((d > 0).sum())


def _jpeg(h, w, seed=0):
    return cv2.imencode(".jpg", _bgr(h, w, seed))[1].tobytes()


def _batch(*items):
    arr = np.empty((len(items), 1), dtype=object)
    arr[:, 0] = items
    return arr


def _args(parameters, kind=None, device_id=None):
    config = {"parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    args = {"model_config": json.dumps(config), "model_repository": "", "model_version": "1"}
    if kind is not None:
        args["model_instance_kind"] = kind
        args["model_instance_device_id"] = str(device_id)
    return args


@pytest.fixture(scope="module")
def host_ref(tmp_path_factory):
    """letterbox.cu built for the CPU with g++ (nvcc when there is no g++), via ctypes."""
    if not (shutil.which("g++") or shutil.which("c++") or _nvcc()):
        pytest.skip("no C++ compiler or nvcc to build the host reference")
    lib = tools.compile_host_reference(tmp_path_factory.mktemp("hostref") / "letterbox_host.so", KERNEL)
    return tools.HostReference(lib)


# --------------------------------------------------------------------------------------------
# nvcc: the kernel compiles for the targets' GPUs

ARCHS = {72: "Jetson Xavier", 80: "A100", 87: "Jetson Orin", 90: "H100/H200"}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_nvcc_compiles_the_kernel(arch, tmp_path):
    nvcc = _nvcc()
    if not nvcc:
        pytest.skip("nvcc is not installed")
    if arch not in tools.nvcc_archs(nvcc):
        why = " (CUDA 13 dropped sm_72; JetPack's nvcc compiles it on the device)" if arch == 72 else ""
        pytest.skip(f"{_nvcc_version(nvcc)} does not list sm_{arch} ({ARCHS[arch]}){why}")
    out = tmp_path / f"letterbox_sm_{arch}.cubin"
    r = subprocess.run([nvcc, "-cubin", f"-arch=sm_{arch}", "-o", str(out), str(KERNEL)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr.lower(), r.stderr
    blob = out.read_bytes()
    for symbol in cl.ENTRY_POINTS.values():
        assert symbol.encode() in blob, f"{symbol} missing from the sm_{arch} cubin"


def test_precompiled_fatbin_for_the_repository(tmp_path):
    nvcc = _nvcc()
    if not nvcc:
        pytest.skip("nvcc is not installed")
    out = tmp_path / "letterbox.fatbin"
    chosen = tools.compile_fatbin(out, archs=(72, 80, 87, 90), source=KERNEL, nvcc=nvcc)
    assert set(chosen) == {a for a in (72, 80, 87, 90) if a in tools.nvcc_archs(nvcc)}
    assert out.stat().st_size > 1000
    cuobjdump = shutil.which("cuobjdump") or str(Path(nvcc).with_name("cuobjdump"))
    if Path(cuobjdump).exists():
        listing = subprocess.run([cuobjdump, "--list-elf", str(out)], capture_output=True, text=True).stdout
        for arch in chosen:
            assert f"sm_{arch}" in listing, listing


def test_nvcc_builds_the_same_host_reference(host_ref, tmp_path):
    nvcc = _nvcc()
    if not nvcc:
        pytest.skip("nvcc is not installed")
    lib = tools.compile_host_reference(tmp_path / "letterbox_nvcc.so", KERNEL, compiler=nvcc)
    by_nvcc = tools.HostReference(lib)
    img = _bgr(333, 517, 3)
    for dtype in (np.float32, np.float16):
        a, _ = host_ref.letterbox(img, 416, 608, dtype)
        b, _ = by_nvcc.letterbox(img, 416, 608, dtype)
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# the kernel's arithmetic (host reference) against the CPU preprocess

CASES = [
    pytest.param(1080, 1920, 640, 640, np.float32, id="1080x1920-to-640"),
    pytest.param(100, 60, 640, 640, np.float32, id="upscale-100x60-to-640"),
    pytest.param(37, 53, 640, 640, np.float32, id="odd-37x53-to-640"),
    pytest.param(333, 517, 375, 501, np.float32, id="odd-333x517-to-375x501"),
    pytest.param(1, 1, 640, 640, np.float32, id="1x1"),
    pytest.param(640, 640, 640, 640, np.float32, id="identity-640"),
    pytest.param(480, 640, 480, 640, np.float32, id="identity-480x640"),
    pytest.param(1280, 1280, 640, 640, np.float32, id="exact-2x-down"),
    pytest.param(2, 3, 5, 7, np.float32, id="tiny-up"),
    pytest.param(1080, 1920, 640, 640, np.float16, id="fp16-1080x1920-to-640"),
    pytest.param(256, 256, 256, 256, np.float16, id="fp16-identity"),
    pytest.param(100, 60, 320, 320, np.float16, id="fp16-upscale"),
]


@pytest.mark.parametrize("h,w,out_h,out_w,dtype", CASES)
def test_host_reference_matches_cpu_preprocess(host_ref, h, w, out_h, out_w, dtype):
    img = _bgr(h, w, seed=h * 7 + w)
    got, transform = host_ref.letterbox(img, out_h, out_w, dtype)
    expected, expected_transform = _cpu_letterbox(img, out_h, out_w)
    expected = expected.astype(dtype)
    assert got.shape == expected.shape == (3, out_h, out_w) and got.dtype == np.dtype(dtype)
    worst, count = _diff(got, expected)
    assert worst <= TOL + 1e-6, f"max abs diff {worst:.6g} (> 1/255) at {count} of {got.size} values"
    np.testing.assert_array_equal(transform, expected_transform)
    # report: the reference reproduces OpenCV's fixed-point rounding, so this is 0 on x86 OpenCV
    print(f"max abs diff {worst:.3g}, {count} of {got.size} values differ")


def test_host_reference_batch_slots(host_ref):
    images = [_bgr(90, 160, 1), _bgr(160, 90, 2), _bgr(64, 64, 3)]
    batch = host_ref.letterbox_batch(images, 128, 128, np.float32)
    assert batch.array.shape == (3, 3, 128, 128)
    for i, img in enumerate(images):
        expected, transform = _cpu_letterbox(img, 128, 128)
        assert _diff(batch.array[i], expected)[0] <= TOL + 1e-6
        np.testing.assert_array_equal(batch.transforms[i], transform)


def test_padding_is_114(host_ref):
    got, _ = host_ref.letterbox(_bgr(100, 300, 5), 300, 300)  # 100 rows of image, 100 of padding above and below
    assert np.all(got[:, :100, :] == np.float32(114) * np.float32(1 / 255))
    assert np.all(got[:, 200:, :] == np.float32(114) * np.float32(1 / 255))


def test_host_reference_refuses_bad_arguments(host_ref):
    out = np.empty((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError):
        host_ref.letterbox_into(out, 0, _bgr(8, 8), geometry=(1.0, 8, 8, 4, 4))  # does not fit
    with pytest.raises(ValueError):
        host_ref.letterbox_into(out, 0, np.zeros((8, 8), np.uint8))


def test_one_letterbox_geometry():
    """The engine, the host reference and the CPU preprocess share letterbox.py's geometry
    (no second copy), and the kernel's arguments and TRANSFORM rows follow from it."""
    assert imaging.letterbox_params is letterbox.letterbox_params is cl.letterbox_params
    rng = np.random.default_rng(0)
    sizes = [(1, 1), (1080, 1920), (100, 60), (37, 53), (640, 640)]
    sizes += [tuple(int(v) for v in s) for s in rng.integers(1, 3000, (300, 2))]
    for h, w in sizes:
        for out_h, out_w in ((640, 640), (384, 640), (375, 501)):
            scale, new_w, new_h, left, top = letterbox.letterbox_params(h, w, out_h, out_w)
            assert 1 <= new_w <= out_w and 1 <= new_h <= out_h and (new_w == out_w or new_h == out_h)
            assert 0 <= left <= out_w - new_w and 0 <= top <= out_h - new_h
            args = cl.kernel_args(h, w, out_h, out_w)
            assert (args.new_w, args.new_h, args.left, args.top) == (new_w, new_h, left, top)
            np.testing.assert_array_equal(letterbox.transform_row((scale, new_w, new_h, left, top), h, w),
                                          np.float32([scale, left, top, w, h]))


def test_decode_bgr_is_decode_image_reversed(tmp_path):
    rng = np.random.default_rng(1)
    samples = {
        "color.jpg": cv2.imencode(".jpg", _bgr(40, 50))[1].tobytes(),
        "gray.png": cv2.imencode(".png", rng.integers(0, 255, (20, 30), dtype=np.uint8))[1].tobytes(),
        "rgba.png": cv2.imencode(".png", rng.integers(0, 255, (20, 30, 4), dtype=np.uint8))[1].tobytes(),
        "16bit.png": cv2.imencode(".png", rng.integers(0, 65535, (20, 30, 3), dtype=np.uint16))[1].tobytes(),
    }
    for name, data in samples.items():
        bgr = imaging.decode_bgr(data)
        assert bgr.dtype == np.uint8 and bgr.shape[2] == 3 and bgr.flags.c_contiguous, name
        np.testing.assert_array_equal(bgr[:, :, ::-1], imaging.decode_image(data), err_msg=name)
    for bad in (b"", b"not an image", "text"):
        with pytest.raises(imaging.ImageError):
            imaging.decode_bgr(bad)


def test_runtime_module_imports_only_numpy_and_stdlib(tmp_path):
    """cuda_letterbox.py is copied beside model.py (with the modules it imports): standalone,
    it finds letterbox.cu beside it."""
    for module in (cl, dlpack, letterbox):
        shutil.copy(Path(module.__file__), tmp_path / Path(module.__file__).name)
    shutil.copy(KERNEL, tmp_path / "letterbox.cu")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cuda_letterbox as c; "
            "heavy = [m for m in ('cv2', 'torch', 'pycuda', 'generator') if m in sys.modules]; "
            "print(heavy, c.find_kernel_source().parent == __import__('pathlib').Path(sys.argv[1]).resolve())")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[] True"


def test_no_pycuda_is_reported_as_gpu_unavailable():
    try:
        import pycuda.driver  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("pycuda is importable here")
    with pytest.raises(cl.GpuUnavailable, match="pycuda"):
        cl.CudaLetterbox(0)


# --------------------------------------------------------------------------------------------
# the engine, with host memory standing in for the GPU (tests/fakes/fake_pycuda.py)


@pytest.fixture()
def fake_engine(host_ref, monkeypatch, tmp_path):
    """CudaLetterbox over the pycuda stand-in; its "fatbin" is a placeholder file."""
    from fakes import fake_pycuda

    driver = fake_pycuda.install(monkeypatch, host_ref.library)
    (tmp_path / "letterbox.fatbin").write_bytes(b"placeholder")
    engine = cl.CudaLetterbox(0, kernel_dir=tmp_path)
    yield engine, driver
    engine.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_engine_batches_match_the_host_reference(fake_engine, host_ref, dtype):
    engine, driver = fake_engine
    assert engine.loaded_from.endswith("letterbox.fatbin") and engine.device_name == "host stand-in"
    images = [_bgr(90, 160, 1), _bgr(160, 90, 2), _bgr(37, 53, 3), _bgr(1, 1, 4)]
    for out_h, out_w in ((128, 128), (96, 160)):
        batch = engine.letterbox_batch(images, out_h, out_w, dtype, timing=True)
        expected = host_ref.letterbox_batch(images, out_h, out_w, dtype)
        got = batch.to_host()
        assert got.shape == (4, 3, out_h, out_w) and got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, expected.array)
        np.testing.assert_array_equal(batch.transforms, expected.transforms)
        assert set(batch.timings_ms()) == {"upload", "kernel", "total"}
        assert batch.__dlpack_device__() == (dlpack.KDL_CUDA, 0)
    assert driver.contexts == [], "a context was left current"


def test_engine_given_geometry_and_empty_batch(fake_engine, host_ref):
    engine, _ = fake_engine
    images = [_bgr(50, 80, 5)]
    geometry = [letterbox.letterbox_params(50, 80, 64, 64)]
    got = engine.letterbox_batch(images, 64, 64, geometry=geometry).to_host()
    np.testing.assert_array_equal(got, host_ref.letterbox_batch(images, 64, 64).array)
    with pytest.raises(ValueError, match="1 images but 2 geometries"):
        engine.letterbox_batch(images, 64, 64, geometry=geometry * 2)
    empty = engine.letterbox_batch([], 64, 64)
    assert empty.to_host().shape == (0, 3, 64, 64) and empty.transforms.shape == (0, 5)


def test_model_runs_the_engine_with_the_stand_in(fake_engine, gpu_stage, pb_utils, monkeypatch):
    """preprocess_gpu's kernel path end to end through CudaLetterbox (copy back to the host)."""
    engine, _ = fake_engine
    gpu_module, cpu_module = gpu_stage
    monkeypatch.setattr(gpu_module.cuda_letterbox, "CudaLetterbox", lambda device_id=0, **kw: engine)
    params = {"height": "96", "width": "128", "dtype": "FP32", "output_device": "cpu"}
    model, got, expected = _run_both(pb_utils, gpu_module, cpu_module, params, kind="GPU", device_id=0)
    assert model.engine is engine, pb_utils.Logger.messages
    _check_errors(got, expected)
    for i in (0, 2):
        assert _diff(got[i].output("PREPROCESSED"), expected[i].output("PREPROCESSED"))[0] <= TOL + 1e-6
        np.testing.assert_array_equal(got[i].output("TRANSFORM"), expected[i].output("TRANSFORM"))


# --------------------------------------------------------------------------------------------
# DLPack producer, over CPU memory


def _consumers():
    torch = pytest.importorskip("torch")
    return {"numpy": np.from_dlpack, "torch": lambda t: torch.utils.dlpack.from_dlpack(t)}


def _as_numpy(x):
    return x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else np.asarray(x)


@pytest.mark.parametrize("consumer", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_dlpack_roundtrip_and_lifetime(consumer, dtype):
    consume = _consumers()[consumer]
    owner = (np.arange(2 * 3 * 5 * 7).reshape(2, 3, 5, 7) / 11).astype(dtype)
    expected = owner.copy()
    alive = weakref.ref(owner)
    before = dlpack.live_exports()
    producer = dlpack.DLPackTensor.from_numpy(owner)
    assert producer.__dlpack_device__() == (dlpack.KDL_CPU, 0)
    del owner
    out = consume(producer)
    del producer
    gc.collect()
    # only the consumer holds the memory now: it must stay valid
    assert alive() is not None and dlpack.live_exports() == before + 1
    _ = [np.ones(10000) for _ in range(50)]  # churn the allocator
    arr = _as_numpy(out)
    assert arr.shape == (2, 3, 5, 7) and arr.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(arr, expected)
    del out, arr
    gc.collect()
    assert dlpack.live_exports() == before, "the consumer's deleter did not run"
    assert alive() is None, "the owner outlived the deleter"


def test_dlpack_unconsumed_capsule_frees_its_owner():
    owner = np.ones(16, np.float32)
    alive = weakref.ref(owner)
    before = dlpack.live_exports()
    capsule = dlpack.DLPackTensor.from_numpy(owner).__dlpack__()
    del owner
    assert alive() is not None and dlpack.live_exports() == before + 1
    del capsule
    gc.collect()
    assert dlpack.live_exports() == before and alive() is None


def test_dlpack_release_hook_strides_and_device():
    released = []
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = base.T  # strides (1, 4) in elements
    t = dlpack.DLPackTensor(view.ctypes.data, view.shape, view.dtype, owner=base, strides=(1, 4), release=released.append)
    got = np.from_dlpack(t)
    np.testing.assert_array_equal(got, view)
    del got
    gc.collect()
    assert released == [base]
    cuda_like = dlpack.DLPackTensor(0x1000, (1, 3, 4, 4), np.float16, dlpack.KDL_CUDA, 3)
    assert cuda_like.__dlpack_device__() == (dlpack.KDL_CUDA, 3)
    with pytest.raises(BufferError):
        cuda_like.__dlpack__(dl_device=(dlpack.KDL_CPU, 0))
    assert dlpack.dlpack_dtype(np.float16) == (dlpack.KDL_FLOAT, 16) and dlpack.dlpack_dtype(np.float32) == (dlpack.KDL_FLOAT, 32)


def test_fake_pb_utils_from_dlpack(pb_utils):
    owner = np.full((2, 3), 0.5, np.float32)
    t = pb_utils.Tensor.from_dlpack("X", dlpack.DLPackTensor.from_numpy(owner))
    assert t.is_cpu() and t.name() == "X"
    np.testing.assert_array_equal(t.as_numpy(), owner)
    gpu = pb_utils.Tensor.from_dlpack("Y", dlpack.DLPackTensor(0x1000, (1,), np.float32, dlpack.KDL_CUDA, 0))
    assert not gpu.is_cpu()
    with pytest.raises(RuntimeError):
        gpu.as_numpy()


# --------------------------------------------------------------------------------------------
# preprocess_gpu with the stand-in pb_utils


@pytest.fixture()
def gpu_stage(pb_utils, monkeypatch):
    monkeypatch.delitem(sys.modules, "generator.runtime.preprocess_gpu", raising=False)
    monkeypatch.delitem(sys.modules, "generator.runtime.preprocess", raising=False)
    from generator.runtime import preprocess, preprocess_gpu

    pb_utils.Logger.messages.clear()
    return preprocess_gpu, preprocess


def _unavailable(reason):
    def factory(*args, **kwargs):
        raise cl.GpuUnavailable(reason)

    return factory


def _requests(pb_utils):
    return [
        pb_utils.InferenceRequest(IMAGE=_batch(_jpeg(50, 80), _jpeg(200, 100, 1), _jpeg(1080, 1920, 2))),
        pb_utils.InferenceRequest(IMAGE=_batch(_jpeg(50, 80), b"\xff\xd8\xff garbage")),
        pb_utils.InferenceRequest(IMAGE=_batch(_jpeg(10, 10, 3))),
    ]


def _run_both(pb_utils, gpu_module, cpu_module, params, **init):
    gpu_model = gpu_module.TritonPythonModel()
    gpu_model.initialize(_args(params, **init))
    cpu_model = cpu_module.TritonPythonModel()
    cpu_model.initialize(_args({k: v for k, v in params.items() if k != "output_device"}))
    return gpu_model, gpu_model.execute(_requests(pb_utils)), cpu_model.execute(_requests(pb_utils))


def _check_errors(got, expected):
    assert [r.has_error() for r in got] == [r.has_error() for r in expected] == [False, True, False]
    assert got[1].error().message() == expected[1].error().message()
    assert "IMAGE[1]" in got[1].error().message() and "cannot decode" in got[1].error().message()


@pytest.mark.parametrize("dtype", ["FP32", "FP16"])
def test_fallback_without_pycuda_equals_cpu_preprocess(gpu_stage, pb_utils, monkeypatch, dtype):
    gpu_module, cpu_module = gpu_stage
    try:
        import pycuda.driver  # noqa: F401
    except Exception:
        pass
    else:  # make this machine look like one without pycuda
        monkeypatch.setattr(gpu_module.cuda_letterbox, "CudaLetterbox", _unavailable("pycuda is not importable (test)"))
    params = {"height": "96", "width": "128", "dtype": dtype, "output_device": "gpu"}
    model, got, expected = _run_both(pb_utils, gpu_module, cpu_module, params, kind="GPU", device_id=0)
    assert model.engine is None and "pycuda" in model.fallback_reason
    lines = pb_utils.Logger.messages
    assert len(lines) == 1 and lines[0][0] == "WARNING", lines
    assert "pycuda" in lines[0][1] and "CPU path" in lines[0][1]
    _check_errors(got, expected)
    for i in (0, 2):
        for name in ("PREPROCESSED", "TRANSFORM"):
            a, b = got[i].output(name), expected[i].output(name)
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_fallback_when_the_kernel_cannot_load(gpu_stage, pb_utils, monkeypatch):
    gpu_module, cpu_module = gpu_stage
    monkeypatch.setattr(gpu_module.cuda_letterbox, "CudaLetterbox",
                        _unavailable("cannot load the letterbox kernel (no nvcc)"))
    params = {"height": "64", "width": "64", "dtype": "FP32", "output_device": "cpu"}
    model, got, expected = _run_both(pb_utils, gpu_module, cpu_module, params)
    assert "cannot load the letterbox kernel" in pb_utils.Logger.messages[0][1]
    _check_errors(got, expected)
    np.testing.assert_array_equal(got[0].output("PREPROCESSED"), expected[0].output("PREPROCESSED"))


def test_device_id_comes_from_the_instance(gpu_stage, monkeypatch):
    gpu_module, _ = gpu_stage
    seen = []

    def factory(device_id=0, **kwargs):
        seen.append(device_id)
        raise cl.GpuUnavailable("test")

    monkeypatch.setattr(gpu_module.cuda_letterbox, "CudaLetterbox", factory)
    params = {"height": "32", "width": "32"}
    for init, expected in (({"kind": "GPU", "device_id": 1}, 1), ({"kind": "CPU", "device_id": 1}, 0), ({}, 0)):
        gpu_module.TritonPythonModel().initialize(_args(params, **init))
        assert seen[-1] == expected


def test_rejects_unknown_parameters(gpu_stage, monkeypatch):
    gpu_module, _ = gpu_stage
    monkeypatch.setattr(gpu_module.cuda_letterbox, "CudaLetterbox", _unavailable("test"))
    with pytest.raises(ValueError, match="output_device"):
        gpu_module.TritonPythonModel().initialize(_args({"height": "32", "width": "32", "output_device": "tpu"}))
    with pytest.raises(ValueError, match="dtype"):
        gpu_module.TritonPythonModel().initialize(_args({"height": "32", "width": "32", "dtype": "INT8"}))


@pytest.mark.parametrize("output_device", ["gpu", "cpu"])
@pytest.mark.parametrize("dtype", ["FP32", "FP16"])
def test_gpu_code_path_with_the_host_reference(gpu_stage, pb_utils, monkeypatch, host_ref, output_device, dtype):
    """The kernel path of preprocess_gpu (decode_bgr, one batch, DLPack or to_host), with the
    kernel's host build standing in for the GPU."""
    gpu_module, cpu_module = gpu_stage
    monkeypatch.setattr(gpu_module.cuda_letterbox, "CudaLetterbox", lambda device_id=0, **kw: host_ref)
    params = {"height": "96", "width": "128", "dtype": dtype, "output_device": output_device}
    model, got, expected = _run_both(pb_utils, gpu_module, cpu_module, params, kind="GPU", device_id=0)
    assert model.engine is host_ref
    assert len(pb_utils.Logger.messages) == 1 and pb_utils.Logger.messages[0][0] == "INFO"
    _check_errors(got, expected)
    for i in (0, 2):
        a, b = got[i].output("PREPROCESSED"), expected[i].output("PREPROCESSED")
        assert a.dtype == b.dtype and a.shape == b.shape
        worst, count = _diff(a, b)
        assert worst <= TOL + 1e-6, f"max abs diff {worst:.6g} at {count} values"
        np.testing.assert_array_equal(got[i].output("TRANSFORM"), expected[i].output("TRANSFORM"))


def test_runtime_failure_switches_to_the_cpu_path(gpu_stage, pb_utils, monkeypatch):
    gpu_module, cpu_module = gpu_stage
    closed = []

    class Broken:
        loaded_from = "test"

        def letterbox_batch(self, *a, **k):
            raise RuntimeError("cuLaunchKernel failed: an illegal memory access was encountered")

        def close(self):
            closed.append(True)

    monkeypatch.setattr(gpu_module.cuda_letterbox, "CudaLetterbox", lambda device_id=0, **kw: Broken())
    params = {"height": "64", "width": "64", "dtype": "FP32", "output_device": "gpu"}
    model, got, expected = _run_both(pb_utils, gpu_module, cpu_module, params)
    _check_errors(got, expected)
    np.testing.assert_array_equal(got[0].output("PREPROCESSED"), expected[0].output("PREPROCESSED"))
    errors = [m for level, m in pb_utils.Logger.messages if level == "ERROR"]
    assert len(errors) == 1 and "illegal memory access" in errors[0]
    assert model.engine is None and closed == [True]


# --------------------------------------------------------------------------------------------
# on a GPU (pycuda)


@pytest.fixture(scope="module")
def cuda_engine():
    engine = cl.CudaLetterbox(0)
    yield engine
    engine.close()


GPU_CASES = [(1080, 1920), (100, 60), (37, 53), (1, 1), (640, 640), (1280, 1280), (333, 517)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_kernel_matches_the_host_reference(cuda_engine, host_ref, dtype):
    images = [_bgr(h, w, seed=i) for i, (h, w) in enumerate(GPU_CASES)]
    for out_h, out_w in ((640, 640), (375, 501)):
        batch = cuda_engine.letterbox_batch(images, out_h, out_w, dtype)
        got = batch.to_host()
        expected = host_ref.letterbox_batch(images, out_h, out_w, dtype)
        worst, count = _diff(got, expected.array)
        assert count == 0, f"kernel vs host reference: max abs diff {worst:.6g} at {count} values"
        np.testing.assert_array_equal(batch.transforms, expected.transforms)
        for i, img in enumerate(images):
            cpu, _ = _cpu_letterbox(img, out_h, out_w)
            assert _diff(got[i], cpu.astype(dtype))[0] <= TOL + 1e-6


@pytest.mark.gpu
def test_gpu_output_via_dlpack(cuda_engine, pb_utils):
    images = [_bgr(480, 640, 1), _bgr(720, 1280, 2)]
    before = dlpack.live_exports()
    batch = cuda_engine.letterbox_batch(images, 640, 640, np.float16)
    expected = batch.to_host()
    assert batch.__dlpack_device__() == (dlpack.KDL_CUDA, 0)
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        t = torch.from_dlpack(batch)
        assert t.is_cuda and t.dtype == torch.float16 and tuple(t.shape) == (2, 3, 640, 640)
        del batch
        gc.collect()
        np.testing.assert_array_equal(t.cpu().numpy(), expected)  # memory still valid
        del t
        gc.collect()
        assert dlpack.live_exports() == before
    tensor = pb_utils.Tensor.from_dlpack("PREPROCESSED", cuda_engine.letterbox_batch(images, 640, 640))
    assert not tensor.is_cpu() and tensor.device == (dlpack.KDL_CUDA, 0)


@pytest.mark.gpu
@pytest.mark.parametrize("output_device", ["gpu", "cpu"])
def test_model_on_the_gpu(gpu_stage, pb_utils, output_device):
    gpu_module, cpu_module = gpu_stage
    params = {"height": "640", "width": "640", "dtype": "FP32", "output_device": output_device}
    model, got, expected = _run_both(pb_utils, gpu_module, cpu_module, params, kind="GPU", device_id=0)
    assert model.engine is not None, pb_utils.Logger.messages
    _check_errors(got, expected)
    for i in (0, 2):
        tensor = got[i]._outputs["PREPROCESSED"]
        if output_device == "gpu":
            assert not tensor.is_cpu()
            values = tensor.dlpack_source.to_host()
        else:
            values = tensor.as_numpy()
        assert _diff(values, expected[i].output("PREPROCESSED"))[0] <= TOL + 1e-6
    del got, tensor
    gc.collect()  # device outputs go before the engine releases its context
    model.finalize()


@pytest.mark.gpu
def test_precompiled_fatbin_is_preferred(tmp_path):
    nvcc = _nvcc()
    if not nvcc:
        pytest.skip("nvcc is not installed")
    import pycuda.driver as cuda

    cuda.init()
    major, minor = cuda.Device(0).compute_capability()
    shutil.copy(KERNEL, tmp_path / "letterbox.cu")
    tools.compile_fatbin(tmp_path / "letterbox.fatbin", archs=(major * 10 + minor,), source=KERNEL, nvcc=nvcc)
    engine = cl.CudaLetterbox(0, kernel_dir=tmp_path)
    try:
        assert engine.loaded_from.endswith("letterbox.fatbin")
        out = engine.letterbox_batch([_bgr(100, 60)], 64, 64).to_host()
        assert out.shape == (1, 3, 64, 64)
    finally:
        engine.close()
