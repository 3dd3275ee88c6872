"""The CUDA path on a real device: parity with the references, the CPU path and torch on CUDA,
bitwise determinism, concurrency on streams. Skipped, with the probe's reason, where cupy or a
CUDA device is missing."""
import threading

import numpy as np
import pytest

import convcore
from convcore import _gpu, _shapes
from convcore._gpu import _plan
from gpucases import assert_close, random_case

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _gpu.available(), reason=f"GPU path {_gpu.describe()}"),
]
DTYPES = (np.float32, np.float64)
OPS = [False, True]
OP_IDS = ["conv2d", "conv_transpose2d"]


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


def _run_path(cp, case, path, scratch_bytes=None):
    """One case through one forced path with the device's real limits; returns cupy out."""
    grid_cap, device_scratch = _gpu.device_limits()
    scratch_bytes = device_scratch if scratch_bytes is None else scratch_bytes
    x, w, bias = cp.asarray(case.x), cp.asarray(case.w), cp.asarray(case.bias)
    out = cp.full(case.out_shape, cp.nan, dtype=x.dtype)
    plan_fn = _plan.plan_conv_transpose2d if case.transposed else _plan.plan_conv2d
    plan = plan_fn(case.x.shape, case.w.shape, case.out_shape, case.stride, case.pad,
                   case.dilation, case.groups, case.bias.size > 0, grid_cap,
                   max(1, scratch_bytes // x.itemsize), path=path)
    _gpu._execute(_gpu._prepare(plan), x, w, bias, out)
    return out


def _kernel_call(cp, case):
    x, w, bias = cp.asarray(case.x), cp.asarray(case.w), cp.asarray(case.bias)
    out = cp.empty(case.out_shape, dtype=x.dtype)
    fn = _gpu.conv_transpose2d if case.transposed else _gpu.conv2d
    fn(x, w, bias, out, *case.kernel_args())
    return out


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("transposed", OPS, ids=OP_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_kernel_contract_every_path(cp, dtype, transposed):
    rng = np.random.default_rng(101 + 2 * transposed + (dtype == np.float64))
    for _ in range(100):
        case = random_case(rng, dtype, transposed)
        assert_close(_kernel_call(cp, case).get(), case)
        for path in case.paths():
            assert_close(_run_path(cp, case, path).get(), case)
            # a tiny scratch budget: one image per im2col/col2im chunk
            assert_close(_run_path(cp, case, path, scratch_bytes=1).get(), case)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_public_api_matches_cpu_path(cp, dtype):
    rng = np.random.default_rng(202)

    def both(fn, x, w, b=None, **kw):
        cpu = fn(x, w, b, **kw)
        args = (cp.asarray(x), cp.asarray(w), None if b is None else cp.asarray(b))
        gpu = fn(*args, **kw)
        assert isinstance(gpu, cp.ndarray) and gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
        # a repeated call takes the API's cached plan: same shape and bits
        again = fn(*args, **kw)
        assert isinstance(again, cp.ndarray) and again.shape == gpu.shape
        assert bool((_bits(again) == _bits(gpu)).all())
        k = w.shape[1] * int(np.prod(w.shape[2:]))
        eps = 1e-5 if dtype == np.float32 else 1e-12
        tol = eps * np.sqrt(k) * max(1.0, float(np.abs(cpu).max(initial=0.0)))
        np.testing.assert_allclose(gpu.get(), cpu, rtol=0, atol=tol)

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    both(convcore.conv2d, r(2, 4, 9, 8), r(6, 2, 3, 3), r(6), stride=2, padding=1, groups=2)
    both(convcore.conv2d, r(4, 9, 8), r(6, 4, 3, 2), padding="same", dilation=2)  # unbatched
    for mode in ("reflect", "replicate", "circular"):
        both(convcore.conv2d, r(2, 3, 7, 7), r(5, 3, 3, 3), r(5), padding=2, padding_mode=mode)
    both(convcore.conv2d, r(1, 8, 6, 6), r(8, 1, 3, 3), padding=1, groups=8)  # depthwise
    both(convcore.conv2d, r(3, 8, 5, 5), r(16, 8, 1, 1), r(16))  # pointwise
    both(convcore.conv1d, r(2, 4, 17), r(6, 4, 5), r(6), stride=3, padding=2, dilation=2)
    both(convcore.conv_transpose2d, r(2, 4, 5, 6), r(4, 3, 3, 3), r(3), stride=2, padding=1,
         output_padding=1)
    both(convcore.conv_transpose2d, r(2, 4, 5, 6), r(4, 2, 3, 2), stride=(2, 3), dilation=2,
         output_padding=(1, 0), groups=2)
    both(convcore.conv_transpose2d, r(1, 6, 4, 4), r(6, 1, 4, 4), r(6), stride=2, groups=6)
    both(convcore.conv_transpose1d, r(3, 2, 11), r(2, 5, 4), r(5), stride=3, output_padding=2)
    # an empty batch never reaches a kernel but must still come back as a cupy array
    both(convcore.conv2d, r(0, 3, 5, 5), r(4, 3, 3, 3), r(4))


def test_cached_plans_keep_numpy_and_cupy_apart(cp):
    """The API's plan cache is keyed by array type: after a cupy call, the same shapes in numpy
    run on the CPU and return numpy, and a cupy input with a numpy weight is still refused."""
    x, w = np.ones((1, 4, 5, 5), np.float32), np.ones((6, 4, 3, 3), np.float32)
    for _ in range(2):
        assert isinstance(convcore.conv2d(cp.asarray(x), cp.asarray(w)), cp.ndarray)
        assert isinstance(convcore.conv2d(x, w), np.ndarray)
        with pytest.raises(TypeError):
            convcore.conv2d(cp.asarray(x), w)


def test_errors_match_cpu_path(cp):
    """Validation is shared code: same exception type and message for numpy and cupy inputs."""
    x, w = np.ones((1, 4, 5, 5), np.float32), np.ones((6, 2, 3, 3), np.float32)
    calls = [
        (convcore.conv2d, dict(stride=0)),
        (convcore.conv2d, dict(padding=-1)),
        (convcore.conv2d, dict(groups=3)),
        (convcore.conv2d, dict(padding="same", stride=2)),
        (convcore.conv2d, dict(dilation=0)),
        (convcore.conv_transpose2d, dict(stride=2, output_padding=2)),
    ]
    for fn, kwargs in calls:
        weight = w if fn is convcore.conv2d else w.reshape(4, 3, 3, 3)
        kwargs = {"groups": 2, **kwargs}
        with pytest.raises((ValueError, TypeError)) as cpu_err:
            fn(x, weight, **kwargs)
        with pytest.raises(type(cpu_err.value)) as gpu_err:
            fn(cp.asarray(x), cp.asarray(weight), **kwargs)
        assert str(gpu_err.value) == str(cpu_err.value)
    with pytest.raises(TypeError):
        convcore.conv2d(cp.asarray(x), w)  # mixed devices
    with pytest.raises(TypeError):
        convcore.conv2d(cp.asarray(x), cp.asarray(w.astype(np.float64)))  # mixed dtypes


def test_nn_modules_on_gpu(cp):
    x = np.random.default_rng(3).standard_normal((2, 4, 8, 8)).astype(np.float32)
    for module in (convcore.nn.Conv2d(4, 6, 3, padding=1, seed=0),
                   convcore.nn.ConvTranspose2d(4, 6, 3, stride=2, seed=0)):
        cpu = module(x)
        gpu = module.to("cuda")(cp.asarray(x))
        assert isinstance(gpu, cp.ndarray)
        np.testing.assert_allclose(gpu.get(), cpu, rtol=0, atol=1e-4 * max(1, np.abs(cpu).max()))


@pytest.mark.parametrize("transposed", OPS, ids=OP_IDS)
def test_matches_torch_cuda(cp, transposed, monkeypatch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device (CPU build or no driver)")
    # TF32 would change float32 results by ~1e-3
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    rng = np.random.default_rng(404 + transposed)
    for dtype in DTYPES:
        for _ in range(50):
            case = random_case(rng, dtype, transposed)
            if transposed:
                out_pad = tuple(o - _shapes.conv_transpose_out_size(i, k, s, p, 0, d)
                                for o, i, k, s, p, d in zip(case.out_shape[2:], case.x.shape[2:],
                                                            case.w.shape[2:], case.stride,
                                                            case.pad, case.dilation))
                kwargs = dict(stride=case.stride, padding=case.pad, output_padding=out_pad,
                              groups=case.groups, dilation=case.dilation)
            else:
                # torch pads both ends alike; the case may pad the end differently
                sizes = [_shapes.conv_out_size(i, k, s, p, p, d) for i, k, s, p, d in
                         zip(case.x.shape[2:], case.w.shape[2:], case.stride, case.pad,
                             case.dilation)]
                if min(sizes) < 1:
                    continue
                kwargs = dict(stride=case.stride, padding=case.pad, dilation=case.dilation,
                              groups=case.groups)
            x = torch.as_tensor(case.x, device="cuda")
            w = torch.as_tensor(case.w, device="cuda")
            b = torch.as_tensor(case.bias, device="cuda") if case.bias.size else None
            expected = fn(x, w, b, **kwargs).cpu().numpy()
            got = _kernel_call(cp, case).get()
            # rows and columns computed by both (they differ only where the end padding differs)
            oh, ow = min(got.shape[2], expected.shape[2]), min(got.shape[3], expected.shape[3])
            got, expected = got[:, :, :oh, :ow], expected[:, :, :oh, :ow]
            eps = 1e-5 if dtype == np.float32 else 1e-12
            tol = eps * np.sqrt(case.reduction_length()) * max(1.0, np.abs(expected).max())
            np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


@pytest.mark.parametrize("transposed", OPS, ids=OP_IDS)
def test_bitwise_deterministic(cp, transposed):
    """Same bits on every run: gathers instead of atomics, fixed sum orders, cuBLAS's fixed
    algorithms for a fixed shape."""
    rng = np.random.default_rng(505 + transposed)
    for dtype in DTYPES:
        for _ in range(20):
            case = random_case(rng, dtype, transposed)
            for path in case.paths():
                first = _bits(_run_path(cp, case, path))
                second = _bits(_run_path(cp, case, path))
                assert bool((first == second).all()), path
    # a layer big enough to fill the device, through the automatic path
    x = cp.asarray(rng.standard_normal((8, 64, 56, 56)).astype(np.float32))
    if transposed:
        w = cp.asarray(rng.standard_normal((64, 32, 4, 4)).astype(np.float32))
        runs = [_bits(convcore.conv_transpose2d(x, w, stride=2, padding=1)) for _ in range(3)]
    else:
        w = cp.asarray(rng.standard_normal((128, 64, 3, 3)).astype(np.float32))
        runs = [_bits(convcore.conv2d(x, w, padding=1)) for _ in range(3)]
    assert all(bool((r == runs[0]).all()) for r in runs[1:])


def test_concurrent_streams_and_threads(cp):
    """Two threads, each on its own non-blocking stream, share the compiled-kernel cache and the
    memory pool; every result equals the serial one bit for bit."""
    rng = np.random.default_rng(606)
    cases = [random_case(rng, dtype, transposed) for dtype in DTYPES for transposed in OPS
             for _ in range(6)]
    _gpu._compiled.clear()  # make the threads race for the first compilation
    results = [[None] * len(cases) for _ in range(2)]
    errors = []

    def work(slot):
        try:
            with cp.cuda.Stream(non_blocking=True) as stream:
                for _ in range(3):
                    for i, case in enumerate(cases):
                        results[slot][i] = _kernel_call(cp, case)
                stream.synchronize()
        except Exception as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    serial = [_kernel_call(cp, case) for case in cases]
    cp.cuda.Device().synchronize()
    for slot in range(2):
        for got, ref in zip(results[slot], serial):
            assert bool((_bits(got) == _bits(ref)).all())


@pytest.mark.slow
def test_more_than_2_31_elements(cp):
    """64-bit indices: a depthwise conv whose input and output exceed 2**31 elements."""
    side = 46341  # side**2 > 2**31
    need = 2 * side * side * 4 + (1 << 30)
    if cp.cuda.Device().mem_info[0] < need:
        pytest.skip(f"needs {need >> 30} GiB of free device memory")
    x = cp.random.default_rng(0).standard_normal((1, 1, side, side), dtype=cp.float32)
    w = cp.asarray(np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3) / 9)
    out = cp.empty((1, 1, side, side), dtype=cp.float32)
    _gpu.conv2d(x, w, cp.empty(0, cp.float32), out, 1, 1, 1, 1, 1, 1, 1)
    # check the last rows (flat indices beyond 2**31) and the first rows on the host
    for rows in (slice(0, 3), slice(side - 3, side)):
        lo, hi = max(rows.start - 1, 0), min(rows.stop + 1, side)
        xs = x[0, 0, lo:hi].get()[None, None]
        pad_top = 1 if rows.start == 0 else 0
        pad_bottom = 1 if rows.stop == side else 0
        xs = np.pad(xs, ((0, 0), (0, 0), (pad_top, pad_bottom), (1, 1)))
        expected = np.zeros((rows.stop - rows.start, side), np.float64)
        wh = w.get()[0, 0].astype(np.float64)
        for i in range(3):
            for j in range(3):
                expected += wh[i, j] * xs[0, 0, i:i + expected.shape[0], j:j + side]
        got = out[0, 0, rows].get()
        tol = 1e-5 * 3 * max(1.0, np.abs(expected).max())
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
