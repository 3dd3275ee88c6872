"""CUDA path for cupy arrays: the kernel contract of convcore/_kernels/__init__.py on the GPU.

``conv2d`` and ``conv_transpose2d`` take the CPU kernels' arguments minus ``num_threads``, with cupy
arrays, and run on the input's device and the current stream. The kernels (conv_kernels.cu/.cuh,
shipped as package data) are compiled with NVRTC through ``cupy.RawModule`` on first use, once per
(device, dtype); GEMMs go straight to cuBLAS's strided-batched GEMM. Which kernels run, and every
launch and GEMM argument, is decided by the pure-Python plans of ``_plan.py``, cached per call
signature: the host work of a repeated call is a few launches.

cupy is optional and imported only inside the functions below, so ``import convcore`` never
imports it.
"""
import functools
import hashlib
import threading
import warnings
from pathlib import Path

import numpy as np

from . import _plan

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("conv_kernels.cuh", "conv_kernels.cu")
KERNELS = ("im2col", "col2im", "col2im_subpixel", "conv_direct", "conv_transpose_direct",
           "add_bias")
REAL_T = {"f": "float", "d": "double"}
# Scratch for the im2col/col2im columns of one call: 1/16 of the device memory, at least 256 MiB;
# batches run in chunks of images that fit. Fixed per device, so a given call always takes the
# same path and chunking (and gives the same bits).
SCRATCH_FRACTION = 16
MIN_SCRATCH_BYTES = 256 << 20
# Grid cap per SM for the grid-stride kernels: enough resident blocks to hide memory latency.
BLOCKS_PER_SM = 32

# Plans kept per call signature (shapes, arguments, device limits); a server's layers fit.
PLAN_CACHE_SIZE = 512

_lock = threading.Lock()
_compiled = {}  # (device id, dtype char) -> {kernel name: cupy.RawKernel}
_limits = {}  # device id -> (grid cap in blocks, scratch budget in bytes)


def kernel_source(real_t):
    """The CUDA source compiled for one element type (``"float"`` or ``"double"``).

    It includes conv_kernels.cuh (compile with ``-I SOURCE_DIR``). The digest of both files leads
    the text because cupy's on-disk kernel cache is keyed by the source text, not by its headers.
    """
    digest = hashlib.sha256(b"".join((SOURCE_DIR / f).read_bytes() for f in SOURCES)).hexdigest()
    body = (SOURCE_DIR / "conv_kernels.cu").read_text()
    return f"// convcore kernels {digest}\n#define real_t {real_t}\n{body}"


@functools.lru_cache(maxsize=None)
def _probe():
    """(usable, description), probed once. Never raises: a broken CUDA setup means 'unavailable'."""
    try:
        # cupy may warn at import (e.g. about CUDA_PATH); shown, but never turned into an error
        # by a strict warnings filter, which would make the probe report "unavailable".
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            import cupy
    except Exception as exc:  # ImportError, or a cupy whose CUDA libraries fail to load
        return False, f"unavailable: cupy cannot be imported ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            return False, f"unavailable: cupy {cupy.__version__} sees no CUDA device"
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception as exc:  # no driver, driver too old, no device: all CUDARuntimeError
        return False, f"unavailable: cupy {cupy.__version__}, no usable CUDA device ({exc})"
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    device = f"device 0: {name} (sm_{props['major']}{props['minor']})"
    try:
        # cupy imports without NVRTC, but it cannot compile the kernels then
        from cupy.cuda import nvrtc

        nvrtc_version = ".".join(map(str, nvrtc.getVersion()))
    except Exception as exc:
        return False, (f"unavailable: cupy {cupy.__version__} sees {device} but cannot load NVRTC "
                       f"({exc}); install a CUDA toolkit or 'cupy-cuda12x[ctk]'")
    return True, f"cupy {cupy.__version__}, NVRTC {nvrtc_version}, {count} device(s), {device}"


def available():
    """True when cupy imports, a CUDA device is usable and NVRTC loads."""
    return _probe()[0]


def describe():
    """One line for show_config: the cupy version and device, or why the GPU path is unavailable."""
    return _probe()[1]


def _kernels(dtype):
    import cupy

    key = (cupy.cuda.Device().id, np.dtype(dtype).char)
    with _lock:
        kernels = _compiled.get(key)
        if kernels is None:
            module = cupy.RawModule(code=kernel_source(REAL_T[key[1]]),
                                    options=("-I" + str(SOURCE_DIR),))
            kernels = {name: module.get_function(name) for name in KERNELS}
            _compiled[key] = kernels
    return kernels


def device_limits():
    """(grid cap in blocks, scratch budget in bytes) of the current device."""
    import cupy

    device = cupy.cuda.Device()
    limits = _limits.get(device.id)
    if limits is None:
        grid_cap = device.attributes["MultiProcessorCount"] * BLOCKS_PER_SM
        scratch = max(MIN_SCRATCH_BYTES, device.mem_info[1] // SCRATCH_FRACTION)
        limits = _limits[device.id] = (grid_cap, scratch)
    return limits


# alpha = 1 and beta = 0 for cuBLAS (host pointer mode, cupy's default), per dtype char
_ALPHA_BETA = {c: (np.ones(1, c), np.zeros(1, c)) for c in "fd"}
_ALPHA_BETA_PTRS = {c: (one.ctypes.data, zero.ctypes.data) for c, (one, zero) in
                    _ALPHA_BETA.items()}


def _prepare(plan):
    """``plan`` with its kernels' integer arguments converted to int64 scalars once."""
    steps = tuple(step._replace(args=tuple(a if isinstance(a, _plan.Ref) else np.int64(a)
                                           for a in step.args))
                  if isinstance(step, _plan.Kernel) else step for step in plan.steps)
    return plan._replace(steps=steps)


@functools.lru_cache(maxsize=PLAN_CACHE_SIZE)
def _cached_plan(transposed, *args):
    plan_fn = _plan.plan_conv_transpose2d if transposed else _plan.plan_conv2d
    return _prepare(plan_fn(*args))


@functools.lru_cache(maxsize=None)
def _cublas():
    """(cupy's cuBLAS bindings, its per-thread handle getter), imported once."""
    from cupy.cuda import device

    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:  # older cupy layouts
        from cupy.cuda import cublas
    return cublas, device.get_cublas_handle


def _gemm(step, a, b, c):
    cublas, handle = _cublas()
    fn = cublas.sgemmStridedBatched if c.dtype.char == "f" else cublas.dgemmStridedBatched
    one, zero = _ALPHA_BETA_PTRS[c.dtype.char]
    item = c.itemsize
    # the binding puts the handle on cupy's current stream
    fn(handle(), int(step.trans_a), int(step.trans_b), step.m, step.n, step.k,
       one, a.data.ptr + step.a.offset * item, step.lda, step.stride_a,
       b.data.ptr + step.b.offset * item, step.ldb, step.stride_b,
       zero, c.data.ptr + step.c.offset * item, step.ldc, step.stride_c, step.batch)


def _execute(plan, x, w, bias, out):
    """Run a ``_prepare``d plan on the current device and stream."""
    import cupy

    buffers = {"x": x, "w": w, "bias": bias, "out": out}
    if plan.scratch:
        buffers["col"] = cupy.empty(plan.scratch, dtype=x.dtype)
    kernels = _kernels(x.dtype)

    def launch(name, grid, block, args):
        kernels[name]((grid,), (block,), args)

    _plan.execute(plan, buffers, launch, _gemm)


def conv2d(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups):
    """conv2d kernel contract on cupy arrays (``bias`` of length 0 means no bias)."""
    with x.device:
        grid_cap, scratch = device_limits()
        plan = _cached_plan(False, x.shape, w.shape, out.shape, (sh, sw), (ph, pw), (dh, dw),
                            groups, bias.size > 0, grid_cap, scratch // x.itemsize)
        _execute(plan, x, w, bias, out)


def conv_transpose2d(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups):
    """conv_transpose2d kernel contract on cupy arrays (``bias`` of length 0 means no bias)."""
    with x.device:
        grid_cap, scratch = device_limits()
        plan = _cached_plan(True, x.shape, w.shape, out.shape, (sh, sw), (ph, pw), (dh, dw),
                            groups, bias.size > 0, grid_cap, scratch // x.itemsize)
        _execute(plan, x, w, bias, out)
