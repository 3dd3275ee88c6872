"""The CUDA kernels run on the host: the test that catches index errors when no GPU is lent.

The generated kernel source (convcore._gpu.kernel_source) is compiled by the host C++ compiler with
host_shim.h standing in for the CUDA built-ins; host_harness.cpp runs every (block, thread) of a
launch serially. The launch plans come from convcore._gpu._plan, the same code the cupy launcher
executes, so grid sizes, chunking and argument lists are exercised too. Every buffer sits between
NaN guards and ``out``/``col`` start as NaN: an out-of-bounds read or an element never written
shows up as NaN in the result, an out-of-bounds write as a changed guard.
"""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from convcore._gpu import KERNELS, SOURCE_DIR, _plan, kernel_source
from gpucases import assert_close, random_case

HERE = Path(__file__).resolve().parent
GUARD = 32
DTYPES = (np.float32, np.float64)


class HostDevice:
    """ctypes view of one compiled harness (one element type)."""

    def __init__(self, path, ubsan_dir):
        self.lib = ctypes.CDLL(str(path))
        self.ubsan_dir = ubsan_dir
        self.signatures = {}
        for name in KERNELS:
            sig = getattr(self.lib, "sig_" + name)
            sig.restype = ctypes.c_char_p
            self.signatures[name] = sig().decode()

    def launch(self, name, grid, block, args):
        kinds = "".join("p" if isinstance(a, np.ndarray) else "i" for a in args)
        assert kinds == self.signatures[name], f"{name}: plan passes {kinds}"
        holders = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray)
                   else ctypes.c_int64(a) for a in args]
        params = (ctypes.c_void_p * len(holders))(*(ctypes.addressof(h) for h in holders))
        getattr(self.lib, "emu_" + name)(ctypes.c_int64(grid), ctypes.c_int64(block), params)
        reports = sorted(self.ubsan_dir.iterdir())
        assert not reports, f"{name}: undefined behaviour\n" + reports[0].read_text()


def _batch_view(buf, offset, rows, cols, ld, stride, batch):
    """The column-major matrices a strided-batched GEMM reads at ``buf[offset:]``, as a
    (batch, rows, cols) view; asserts BLAS's argument rules and that every element is in ``buf``."""
    assert 0 < rows <= ld <= _plan.INT_MAX and 0 < cols <= _plan.INT_MAX and batch > 0
    assert offset >= 0 and stride >= 0
    assert offset + (batch - 1) * stride + (cols - 1) * ld + rows <= buf.size, "GEMM out of bounds"
    item = buf.itemsize
    return np.lib.stride_tricks.as_strided(buf[offset:], (batch, rows, cols),
                                           (stride * item, item, ld * item))


def host_gemm(step, a, b, c):
    """cuBLAS's ``<t>gemmStridedBatched`` on flat numpy buffers (the host stand-in for the GPU)."""
    A = _batch_view(a, step.a.offset, *((step.k, step.m) if step.trans_a else (step.m, step.k)),
                    step.lda, step.stride_a, step.batch)
    B = _batch_view(b, step.b.offset, *((step.n, step.k) if step.trans_b else (step.k, step.n)),
                    step.ldb, step.stride_b, step.batch)
    C = _batch_view(c, step.c.offset, step.m, step.n, step.ldc, step.stride_c, step.batch)
    # the outputs of a batch must not overlap
    assert step.batch == 1 or step.stride_c >= step.ldc * step.n
    C[...] = (A.swapaxes(1, 2) if step.trans_a else A) @ (B.swapaxes(1, 2) if step.trans_b else B)


def _build(tmp_path_factory, ubsan_dir):
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no host C++ compiler (g++ or $CXX) to emulate the CUDA kernels with")
    tmp = tmp_path_factory.mktemp("host_emulation")
    built = {}
    for dtype, real_t in zip(DTYPES, ("float", "double")):
        source = tmp / f"kernels_{real_t}.cu"
        source.write_text(kernel_source(real_t))
        lib = tmp / f"libemu_{real_t}.so"
        cmd = [cxx, "-O1", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
               "-fsanitize=undefined", f"-I{SOURCE_DIR}", f"-I{HERE}",
               f'-DCONVCORE_KERNEL_SOURCE="{source}"', str(HERE / "host_harness.cpp"),
               "-o", str(lib)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        built[np.dtype(dtype)] = HostDevice(lib, ubsan_dir)
    return built


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    """The harnesses, with undefined-behaviour reports written to files that ``launch`` checks
    after every kernel (a report fails the test instead of aborting the test process)."""
    ubsan_dir = tmp_path_factory.mktemp("ubsan")
    saved = os.environ.get("UBSAN_OPTIONS")
    # read by the sanitizer runtime when the first harness is loaded
    os.environ["UBSAN_OPTIONS"] = f"log_path={ubsan_dir / 'report'}:print_stacktrace=1"
    try:
        return _build(tmp_path_factory, ubsan_dir)
    finally:
        if saved is None:
            del os.environ["UBSAN_OPTIONS"]
        else:
            os.environ["UBSAN_OPTIONS"] = saved


def _guarded(shape, dtype, values=None):
    """(block, inner): a C-contiguous array ``inner`` inside a NaN-filled ``block``."""
    size = int(np.prod(shape))
    block = np.full(size + 2 * GUARD, np.nan, dtype=dtype)
    inner = block[GUARD:GUARD + size].reshape(shape)
    if values is not None:
        inner[...] = values
    return block, inner


def run_plan(device, case, path=None, max_blocks=1 << 30, scratch_budget=1 << 30,
             index64=False):
    """Execute the plan of ``case`` on the host device; returns (out, plan)."""
    plan_fn = _plan.plan_conv_transpose2d if case.transposed else _plan.plan_conv2d
    plan = plan_fn(case.x.shape, case.w.shape, case.out_shape, case.stride, case.pad,
                   case.dilation, case.groups, case.bias.size > 0, max_blocks, scratch_budget,
                   path=path, index64=index64)
    dtype = case.x.dtype
    blocks, buffers = {}, {}
    for name, shape, values in (("x", case.x.shape, case.x), ("w", case.w.shape, case.w),
                                ("bias", case.bias.shape, case.bias),
                                ("out", case.out_shape, None), ("col", (plan.scratch,), None)):
        blocks[name], buffers[name] = _guarded(shape, dtype, values)
    _plan.execute(plan, buffers, device.launch, host_gemm)
    for name, block in blocks.items():
        assert np.isnan(block[:GUARD]).all() and np.isnan(block[-GUARD:]).all(), \
            f"{plan.path}: write outside '{name}'"
    return buffers["out"], plan


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_every_path_matches_reference(devices, dtype, transposed):
    """200 random cases per op and dtype, each through every path that applies, with a grid that
    covers every element with its own thread and with a capped grid (grid-stride loop), and with
    scratch budgets that split the batch into chunks."""
    rng = np.random.default_rng(20261125 + 2 * transposed + (dtype == np.float64))
    device = devices[np.dtype(dtype)]
    seen = set()
    for _ in range(200):
        case = random_case(rng, dtype, transposed)
        for path in case.paths():
            max_blocks = int(rng.choice([1, 2, 3, 1 << 30]))
            budget = int(rng.integers(1, 2000))
            out, plan = run_plan(device, case, path, max_blocks, budget, bool(rng.random() < 0.5))
            assert plan.path == path
            assert_close(out, case)
            seen.add(path)
    expected = ({"direct", "gemm", "gemm_col2im", "gemm_col2im_subpixel"} if transposed
                else {"direct", "gemm", "im2col_gemm"})
    assert seen == expected


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_kernels_are_bitwise_independent_of_the_grid_and_index_width(devices, transposed):
    """Each output element is computed by one thread in a fixed order, whatever the grid, and
    the int and long long index arithmetic find the same elements."""
    rng = np.random.default_rng(7 + transposed)
    device = devices[np.dtype(np.float32)]
    for _ in range(40):
        case = random_case(rng, np.float32, transposed)
        for path in case.paths():
            full, plan = run_plan(device, case, path, scratch_budget=1 << 30)
            assert all(s.args[-1] == 1 for s in plan.steps if isinstance(s, _plan.Kernel))
            capped, _ = run_plan(device, case, path, max_blocks=1, scratch_budget=1 << 30)
            wide, plan = run_plan(device, case, path, scratch_budget=1 << 30, index64=True)
            assert all(s.args[-1] == 0 for s in plan.steps if isinstance(s, _plan.Kernel))
            np.testing.assert_array_equal(full.view(np.uint32), capped.view(np.uint32))
            np.testing.assert_array_equal(full.view(np.uint32), wide.view(np.uint32))


def test_subpixel_col2im_equals_general_col2im(devices):
    """Dilation 1: the sub-pixel gather visits the same taps in the same order, so same bits."""
    rng = np.random.default_rng(11)
    device = devices[np.dtype(np.float64)]
    checked = 0
    while checked < 40:
        case = random_case(rng, np.float64, transposed=True)
        if case.dilation != (1, 1):
            continue
        sub, _ = run_plan(device, case, "gemm_col2im_subpixel")
        general, _ = run_plan(device, case, "gemm_col2im")
        np.testing.assert_array_equal(sub.view(np.uint64), general.view(np.uint64))
        checked += 1


def test_automatic_path_choice():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 5))
    cases = [
        # (transposed, weight shape, out spatial, stride, pad, dilation, groups, path)
        (False, (6, 1, 3, 3), (3, 3), (1, 1), (0, 0), (1, 1), 6, "direct"),
        (False, (4, 6, 1, 1), (5, 5), (1, 1), (0, 0), (1, 1), 1, "gemm"),
        (False, (4, 6, 3, 3), (3, 3), (1, 1), (0, 0), (1, 1), 1, "im2col_gemm"),
        (True, (6, 1, 3, 3), (7, 7), (1, 1), (0, 0), (1, 1), 6, "direct"),
        (True, (6, 4, 1, 1), (5, 5), (1, 1), (0, 0), (1, 1), 1, "gemm"),
        (True, (6, 4, 3, 3), (11, 11), (2, 2), (0, 0), (1, 1), 1, "gemm_col2im_subpixel"),
        (True, (6, 4, 3, 3), (13, 13), (2, 2), (0, 0), (2, 2), 1, "gemm_col2im"),
    ]
    for transposed, w_shape, spatial, stride, pad, dilation, groups, path in cases:
        plan_fn = _plan.plan_conv_transpose2d if transposed else _plan.plan_conv2d
        c_out = w_shape[1] * groups if transposed else w_shape[0]
        plan = plan_fn(x.shape, w_shape, (2, c_out, *spatial), stride, pad, dilation, groups,
                       False, 1 << 30, 1 << 30)
        assert plan.path == path, (transposed, w_shape)


def test_launch_arithmetic():
    """Grid sizes, chunking and 64-bit element counts, on shapes too big to emulate."""
    assert _plan.grid_size(1, 1000) == 1
    assert _plan.grid_size(_plan.BLOCK + 1, 1000) == 2
    assert _plan.grid_size(10**12, 4224) == 4224
    # 256 images of 512x128x128 through a 3x3 conv: 2**31 output and 1.9e10 column elements
    n, c, hw = 256, 512, 128
    per_image = c * 9 * hw * hw
    shapes = ((n, c, hw, hw), (c, c, 3, 3), (n, c, hw, hw), (1, 1), (1, 1), (1, 1), 1, True, 4224)
    plan = _plan.plan_conv2d(*shapes, per_image * 3 // 2)
    assert plan.path == "im2col_gemm" and plan.scratch == per_image  # the budget holds one image
    # one image's columns beyond the budget: the direct kernel, which needs no scratch
    assert _plan.plan_conv2d(*shapes, per_image - 1)[:2] == ("direct", 0)
    im2cols = [s for s in plan.steps if isinstance(s, _plan.Kernel) and s.name == "im2col"]
    assert len(im2cols) == n
    assert im2cols[-1].args[1] == _plan.Ref("x", (n - 1) * c * hw * hw)
    bias = plan.steps[-1]
    assert bias.name == "add_bias" and bias.args[0] == n * c * hw * hw == 2**31
    assert bias.grid == 4224
    # 2**31 output elements: every kernel does its index arithmetic in long long
    assert all(s.args[-1] == 0 for s in plan.steps if isinstance(s, _plan.Kernel))
    # one image fewer: ints suffice; a huge dilation makes a coordinate too big for an int again
    shapes = ((n - 1, *shapes[0][1:]), shapes[1], (n - 1, *shapes[2][1:]), *shapes[3:])
    assert _plan.plan_conv2d(*shapes, per_image).steps[-1].args[-1] == 1
    far = (*shapes[:5], (1, 2**30), *shapes[6:])
    assert _plan.plan_conv2d(*far, per_image).steps[-1].args[-1] == 0
    # one GEMM call per image, batched over the single group; its strides step a whole image
    gemms = [s for s in plan.steps if isinstance(s, _plan.Gemm)]
    assert len(gemms) == n and gemms[0].batch == 1
    assert gemms[-1].c == _plan.Ref("out", (n - 1) * c * hw * hw)


def test_gemm_sizes_fit_cublas_ints():
    """A plane of more than 2**31 pixels is beyond cuBLAS's int sizes: only the direct kernel."""
    side = 46341  # side**2 > 2**31
    big = ((1, 2, side, side), (2, 2, 1, 1), (1, 2, side, side), (1, 1), (0, 0), (1, 1), 1)
    assert _plan.conv2d_paths(*big[:5], 1) == ["direct"]
    assert _plan.conv_transpose2d_paths(*big) == ["direct"]
    assert _plan.plan_conv2d(*big[:5], (1, 1), 1, False, 4224, 1 << 40).path == "direct"
    with pytest.raises(ValueError, match="32-bit"):
        _plan.plan_conv2d(*big[:5], (1, 1), 1, False, 4224, 1 << 40, path="gemm")
    # within the limits, a batch over groups or over images, whichever takes fewer calls
    small = ((3, 8, 5, 5), (8, 2, 1, 1), (3, 8, 5, 5), (1, 1), (0, 0), (1, 1), 4, False, 64, 1000)
    gemms = _plan.plan_conv2d(*small).steps
    assert [(g.batch, g.stride_b) for g in gemms] == [(4, 2 * 2)] * 3
    small = ((5, 8, 5, 5), *small[1:])
    gemms = _plan.plan_conv2d(*small).steps
    assert [(g.batch, g.stride_b) for g in gemms] == [(5, 0)] * 4


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_automatic_plan_stays_within_the_scratch_budget(devices, transposed):
    rng = np.random.default_rng(13 + transposed)
    device = devices[np.dtype(np.float64)]
    paths = set()
    for _ in range(150):
        case = random_case(rng, np.float64, transposed)
        budget = int(rng.integers(1, 1500))
        out, plan = run_plan(device, case, scratch_budget=budget)
        assert plan.scratch <= budget
        assert_close(out, case)
        paths.add(plan.path)
    assert "direct" in paths and len(paths) >= 3


def test_kernel_parameters_are_pointers_and_long_longs(devices):
    """Sizes reach the kernels as 64-bit integers (the launchers pass every int as int64)."""
    for device in devices.values():
        for name, sig in device.signatures.items():
            assert set(sig) <= {"p", "i"} and sig[0] == "i", (name, sig)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_matches_cpu_engine(devices, transposed):
    """The emulated GPU kernels against convcore's CPU kernels on the same contract."""
    module = "conv_transpose" if transposed else "conv"
    cpu = pytest.importorskip(f"convcore._kernels.{module}",
                              reason=f"CPU {module} kernels not built")
    cpu_fn = cpu.conv_transpose2d if transposed else cpu.conv2d
    rng = np.random.default_rng(5 + transposed)
    for dtype in DTYPES:
        for _ in range(60):
            case = random_case(rng, dtype, transposed)
            expected = np.empty(case.out_shape, dtype)
            cpu_fn(case.x, case.w, case.bias, expected, *case.kernel_args(), 1)
            got, _ = run_plan(devices[np.dtype(dtype)], case)
            eps = 1e-5 if dtype == np.float32 else 1e-12
            tol = eps * np.sqrt(case.reduction_length()) * max(1.0, np.abs(expected).max())
            np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
