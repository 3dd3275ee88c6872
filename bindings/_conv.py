"""Validation, shape computation and dispatch shared by the 1-D and 2-D functions.

Every check uses torch's rule, in libtorch's order, with libtorch's wording (so that the R layer
can pass messages through). 1-D calls become 2-D calls with a height of 1 before they reach a kernel.
"""
import functools
import os

import numpy as np

from convcore import _shapes
from convcore._threads import get_num_threads

from . import _args, _outputs
from ._arrays import as_operands, is_cupy

_NUMPY_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_cpu_kernels = None


def _backend(xp):
    """(conv2d, conv_transpose2d, num_threads) of the array module's backend."""
    global _cpu_kernels
    if xp is np:
        if _cpu_kernels is None:
            from convcore._kernels import conv, conv_transpose

            _cpu_kernels = conv.conv2d, conv_transpose.conv_transpose2d
        return _cpu_kernels + (get_num_threads(),)
    from convcore import _gpu

    return _gpu.conv2d, _gpu.conv_transpose2d, None


def _batched(x, nd, fn):
    if x.ndim != nd + 2 and x.ndim != nd + 1:
        raise ValueError(
            f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {fn}, "
            f"but got input of size: {list(x.shape)}"
        )
    return (x[None], True) if x.ndim == nd + 1 else (x, False)


def _check_weight_ndim(w, nd, fn, layout):
    if w.ndim != nd + 2:
        raise ValueError(
            f"{fn}(): expected weight to be {nd + 2}-dimensional {layout}, "
            f"but got weight of size {list(w.shape)}"
        )


def _check_groups(groups):
    if groups <= 0:
        raise ValueError("non-positive groups is not supported")


def _check_signs(padding, output_padding, stride, dilation):
    """check_shape_forward's first checks (dilation 0 is caught later, as in torch)."""
    if min(padding) < 0:
        raise ValueError("negative padding is not supported")
    if min(output_padding) < 0:
        raise ValueError("negative output_padding is not supported")
    if min(stride) <= 0:
        raise ValueError("non-positive stride is not supported")
    if min(dilation) < 0:
        raise ValueError("dilation should be greater than zero")


def _check_weight_groups(w, groups):
    if w.shape[0] < groups:
        raise ValueError(
            f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, "
            f"but got weight of size {list(w.shape)} instead"
        )
    if w.shape[0] % groups:
        raise ValueError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size [{list(w.shape)}] instead"
        )


def _check_bias(b, n_out, w, transposed):
    if b is not None and (b.ndim != 1 or b.shape[0] != n_out):
        prefix = "Given transposed=1, weight" if transposed else "Given weight"
        raise ValueError(
            f"{prefix} of size {list(w.shape)}, expected bias to be 1-dimensional with {n_out} "
            f"elements, but got bias of size {list(b.shape)} instead"
        )


def _check_spatial(x):
    if x.shape[0] and x.shape[1] and 0 in x.shape[2:]:
        raise ValueError(
            "Only zero batch or zero channel inputs are supported, "
            f"but got input shape: {list(x.shape)}"
        )


def _int32(value):
    """value as a C int: libtorch's transposed-conv backend narrows its int64 arguments so."""
    return (value + 2**31) % 2**32 - 2**31


def _check_kernel_and_dilation(kernel, dilation, transposed, x, stride=None):
    """The backends' late checks, in 2-D form also for 1-D calls. torch's backend for empty
    inputs skips them (the kernel-size check only when there are no input channels). The
    transposed backend checks the stride too, and both as C ints: 2**31 fails as -2**31."""
    k2, d2 = _pair(kernel, 1), _pair(dilation, 1)
    if x.size == 0:
        if x.shape[1] == 0 or min(k2) > 0:
            return
    if min(k2) <= 0:
        raise ValueError(
            f"kernel size should be greater than zero, but got kernel_height: {k2[0]} kernel_width: {k2[1]}"
        )
    if transposed:
        s2 = tuple(_int32(v) for v in _pair(stride, 1))
        d2 = tuple(_int32(v) for v in d2)
        if min(s2) <= 0:
            raise ValueError(f"stride should be greater than zero, but got stride_height: {s2[0]} stride_width: {s2[1]}")
    if min(d2) <= 0:
        got = f"dilation_height: {d2[0]}, dilation_width: {d2[1]}" if transposed else str(list(d2))
        raise ValueError(f"dilation should be greater than zero, but got {got}")


def _pad_explicitly(x, pads, mode, xp, unbatched, fn):
    """F.pad(x, pads, mode) with torch's rules and messages: negative padding crops, then
    reflect/replicate/circular padding is added, so the kernel sees no padding."""
    nd = len(pads)
    shape = list(x.shape[1:] if unbatched else x.shape)
    if mode != "circular" and 0 in x.shape[1:]:
        raise ValueError(
            f"Expected {nd + 1}D or {nd + 2}D (batch mode) tensor with possibly 0 batch size and other "
            f"non-zero dimensions for input, but got: {shape}"
        )
    for d in reversed(range(nd)):  # F.pad checks the last dimension first
        before, after = pads[d]
        size = x.shape[2 + d]
        if mode == "reflect" and (before >= size or after >= size):
            raise ValueError(
                f"Argument #{4 + 2 * (nd - 1 - d)}: Padding size should be less than the corresponding "
                f"input dimension, but got: padding ({before}, {after}) at dimension "
                f"{len(shape) - nd + d} of input {shape}"
            )
        if mode == "circular" and (before > size or after > size):
            raise ValueError("Padding value causes wrapping around more than once.")
    if all(p == (0, 0) for p in pads):
        return x
    crop = tuple(slice(-min(p0, 0), x.shape[2 + d] + min(p1, 0)) for d, (p0, p1) in enumerate(pads))
    x = x[(slice(None), slice(None)) + crop]
    if 0 in x.shape[2:]:
        raise ValueError(f"{fn}(): padding {[p for p, _ in pads]} crops the input to size {list(x.shape)}")
    width = ((0, 0), (0, 0)) + tuple((max(p0, 0), max(p1, 0)) for p0, p1 in pads)
    size = 1
    for n, (p0, p1) in zip(x.shape, width):
        size *= n + p0 + p1
    _check_size(size * x.dtype.itemsize, "padded input", fn)
    return xp.pad(x, width, mode=_NUMPY_PAD_MODE[mode])


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**63


_MEMORY_LIMIT = min(_physical_memory(), 2**63)


def _check_size(nbytes, what, fn):
    """Refuse, before allocating, what no machine (or not this one) could hold: with memory
    overcommit a huge np.empty "succeeds" and the kernel's first writes kill the process."""
    if nbytes > _MEMORY_LIMIT:
        raise MemoryError(
            f"{fn}(): the {what} would need {nbytes} bytes, more than this machine's {_MEMORY_LIMIT} bytes of memory"
        )


def _empty(xp, shape, dtype, fn):
    """The output array; impossible sizes raise MemoryError naming the output, before allocating."""
    size = 1
    for n in shape:
        size *= n
    _check_size(size * dtype.itemsize, f"output of size {list(shape)}", fn)
    try:
        if xp is np:
            return _outputs.empty(shape, dtype, size * dtype.itemsize)
        return xp.empty(shape, dtype=dtype)
    except (ValueError, MemoryError) as exc:  # numpy's "array is too big" / failed allocation
        raise MemoryError(f"{fn}(): cannot allocate the output of size {list(shape)}: {exc}") from None


def _pair(values, neutral):
    """A 1-D call's (v,) as the 2-D (neutral, v)."""
    return (neutral, values[0]) if len(values) == 1 else values


def _as_2d(a, nd):
    """A 1-D operand (…, L) as the 2-D view (…, 1, L) the kernels take."""
    return a.reshape(a.shape[:2] + (1,) + a.shape[2:]) if nd == 1 else a


def _on_input_device(op):
    """Run a cupy call on its input's device, so that output and scratch are allocated there."""

    @functools.wraps(op)
    def wrapper(input, *args):
        if type(input) is np.ndarray or not is_cupy(input):
            return op(input, *args)
        with input.device:
            return op(input, *args)

    return wrapper


@_on_input_device
def convolution(input, weight, bias, stride, padding, dilation, groups, padding_mode, nd, fn):
    # other padding modes pad the input's values first: those calls are never planned
    key = None
    if padding_mode == "zeros":
        key = _plan_key(fn, input, weight, bias, (stride, padding, dilation, groups))
    plan = _PLANS.get(key) if key is not None else None
    if plan is not None:
        return _run_plan(plan, input, weight, bias)
    x, w, b, xp = as_operands(input, weight, bias, fn)
    x, unbatched = _batched(x, nd, fn)
    # argument types first (torch's parser), then groups, then lengths (expand_param_if_needed)
    stride = _args.as_ints(stride, "stride", fn)
    padding = _args.as_padding(padding, fn, allow_strings=True)
    dilation = _args.as_ints(dilation, "dilation", fn)
    groups = _args.as_int(groups, "groups", fn)
    if padding_mode != "zeros":
        padding_mode = _args.as_padding_mode(padding_mode, fn)
    _check_weight_ndim(w, nd, fn, "(out_channels, in_channels/groups, *kernel_size)")
    _check_groups(groups)
    stride = _args.expand(stride, nd, "stride")
    if not isinstance(padding, str):
        padding = _args.expand(padding, nd, "padding")
    dilation = _args.expand(dilation, nd, "dilation")
    kernel = w.shape[2:]

    if padding == "same":
        if max(stride) != 1:
            raise ValueError("padding='same' is not supported for strided convolutions")
        pads = [_shapes.same_padding(k, d) for k, d in zip(kernel, dilation)]
    elif padding == "valid":
        pads = [(0, 0)] * nd
    else:
        pads = [(p, p) for p in padding]
    if padding_mode != "zeros":
        # as torch.nn.ConvNd: F.pad first (its rules and errors), then a conv without padding
        x = _pad_explicitly(x, pads, padding_mode, xp, unbatched, fn)
        pads = [(0, 0)] * nd
    _check_signs([p for pair in pads for p in pair], (0,), stride, dilation)
    _check_weight_groups(w, groups)
    n_out = w.shape[0]
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(
            f"Given groups={groups}, weight of size {list(w.shape)}, expected input"
            f"{list(x.shape)} to have {w.shape[1] * groups} channels, "
            f"but got {x.shape[1]} channels instead"
        )
    _check_bias(b, n_out, w, transposed=False)
    padded = [s + p0 + p1 for s, (p0, p1) in zip(x.shape[2:], pads)]
    dilated = [_shapes.dilated_kernel(k, d) for k, d in zip(kernel, dilation)]
    if any(p < k for p, k in zip(padded, dilated)):
        raise ValueError(
            f"Calculated padded input size per channel: {_args.size_str(padded)}. "
            f"Kernel size: {_args.size_str(dilated)}. Kernel size can't be greater than actual input size"
        )
    _check_spatial(x)
    _check_kernel_and_dilation(kernel, dilation, False, x)
    out_sizes = tuple(
        _shapes.conv_out_size(s, k, st, p0, p1, d)
        for s, k, st, (p0, p1), d in zip(x.shape[2:], kernel, stride, pads, dilation)
    )
    kernel_args = None
    if x.shape[1] == 0:  # torch returns an empty result with no channels (bias dropped)
        out = _empty(xp, (x.shape[0], 0) + out_sizes, x.dtype, fn)
    else:
        out = _empty(xp, (x.shape[0], n_out) + out_sizes, x.dtype, fn)
        if out.size:
            kernel_args = _run(xp, False, x, w, b, out, nd, _pair(stride, 1), _pair([p for p, _ in pads], 0),
                               _pair(dilation, 1), groups, fn)
    if key is not None:
        _store_plan(key, False, x, w, out, nd, unbatched, kernel_args, xp)
    return out[0] if unbatched else out


@_on_input_device
def conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, nd, fn):
    key = _plan_key(fn, input, weight, bias, (stride, padding, output_padding, groups, dilation))
    plan = _PLANS.get(key) if key is not None else None
    if plan is not None:
        return _run_plan(plan, input, weight, bias)
    x, w, b, xp = as_operands(input, weight, bias, fn)
    x, unbatched = _batched(x, nd, fn)
    stride = _args.as_ints(stride, "stride", fn)
    padding = _args.as_padding(padding, fn, allow_strings=False)
    output_padding = _args.as_ints(output_padding, "output_padding", fn)
    groups = _args.as_int(groups, "groups", fn)
    dilation = _args.as_ints(dilation, "dilation", fn)
    _check_weight_ndim(w, nd, fn, "(in_channels, out_channels/groups, *kernel_size)")
    _check_groups(groups)
    stride = _args.expand(stride, nd, "stride")
    padding = _args.expand(padding, nd, "padding")
    dilation = _args.expand(dilation, nd, "dilation")
    output_padding = _args.expand(output_padding, nd, "output_padding")
    kernel = w.shape[2:]

    _check_signs(padding, output_padding, stride, dilation)
    _check_weight_groups(w, groups)
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"Given transposed=1, weight of size {list(w.shape)}, expected input{list(x.shape)} "
            f"to have {w.shape[0]} channels, but got {x.shape[1]} channels instead"
        )
    n_out = w.shape[1] * groups
    _check_bias(b, n_out, w, transposed=True)
    _check_spatial(x)
    if w.shape[1] == 0:
        raise ValueError(f"non-empty 2D or 4D weight tensor expected, but got: {list(w.shape)}")
    _check_kernel_and_dilation(kernel, dilation, True, x, stride)
    # libtorch checks the rest in 2-D form, also for 1-D calls, on C ints
    st2, pd2, dl2, op2 = _pair(stride, 1), _pair(padding, 0), _pair(dilation, 1), _pair(output_padding, 0)
    s32, d32, o32 = ([_int32(v) for v in vals] for vals in (st2, dl2, op2))
    if (o32[0] >= s32[0] and o32[0] >= d32[0]) or (o32[1] >= s32[1] and o32[1] >= d32[1]):
        raise ValueError(
            "output padding must be smaller than either stride or dilation, but got "
            f"output_padding_height: {o32[0]} output_padding_width: {o32[1]} "
            f"stride_height: {s32[0]} stride_width: {s32[1]} "
            f"dilation_height: {d32[0]} dilation_width: {d32[1]}"
        )
    out_sizes = tuple(
        _shapes.conv_transpose_out_size(s, k, st, p, op, d)
        for s, k, st, p, op, d in zip(x.shape[2:], kernel, stride, padding, output_padding, dilation)
    )
    # torch lets an empty batch through with an empty (but not a negative) output size; otherwise
    # its backend checks the size it computes from C ints (a dilated kernel past 2**31 wraps)
    checked = out_sizes if x.shape[0] == 0 else tuple(
        (i - 1) * s - _int32(2 * p) + _int32(_int32(d * (k - 1)) + 1) + o
        for i, k, s, p, o, d in zip(x.shape[2:], kernel, s32[2 - nd:], (_int32(v) for v in padding),
                                    o32[2 - nd:], d32[2 - nd:])
    )
    if min(checked) < (0 if x.shape[0] == 0 else 1):
        raise ValueError(
            f"Given input size per channel: {_args.size_str(_pair(x.shape[2:], 1))}. Calculated output "
            f"size per channel: {_args.size_str(_pair(checked, 1))}. Output size is too small"
        )
    out = _empty(xp, (x.shape[0], n_out) + out_sizes, x.dtype, fn)
    kernel_args = _run(xp, True, x, w, b, out, nd, st2, pd2, dl2, groups, fn) if out.size else None
    if key is not None:
        _store_plan(key, True, x, w, out, nd, unbatched, kernel_args, xp)
    return out[0] if unbatched else out


_INT_MAX = 2**31 - 1  # the kernels take C ints for strides, paddings and dilations


def _kernel_ints(values, sizes, kernel, fn, names):
    """Strides/dilations that cannot change the result are set to 1 (torch accepts any int64 there);
    what remains must fit the kernels' C int."""
    (stride, pad, dilation) = values
    stride = tuple(1 if n == 1 else s for s, n in zip(stride, sizes))
    dilation = tuple(1 if k == 1 else d for d, k in zip(dilation, kernel))
    for name, vals in zip(names, (stride, pad, dilation)):
        for v in vals:
            if v > _INT_MAX:
                raise ValueError(f"{fn}(): {name}={v} exceeds the kernels' range (2**31 - 1)")
    return stride, pad, dilation


def _run(xp, transposed, x, w, b, out, nd, stride, pad_begin, dilation, groups, fn):
    """Hand contiguous 2-D-layout operands to the backend kernel, which fills ``out``."""
    for a, name in ((x, "input"), (w, "weight")):
        if not a.flags.c_contiguous:
            _check_size(a.size * a.itemsize, f"contiguous copy of the {name} of size {list(a.shape)}", fn)
    # a stride matters only where there is more than one position to step over (the phase
    # kernels size tables by the stride: 2**31 - 1 over one input pixel must not reach them)
    sizes = _pair(x.shape[2:] if transposed else out.shape[2:], 1)
    stride, pad_begin, dilation = _kernel_ints(
        (stride, pad_begin, dilation), sizes, _pair(w.shape[2:], 1), fn, ("stride", "padding", "dilation"))
    conv2d, conv_transpose2d, num_threads = _backend(xp)
    x = _as_2d(xp.ascontiguousarray(x), nd)
    w = _as_2d(xp.ascontiguousarray(w), nd)
    b = xp.empty(0, dtype=x.dtype) if b is None else xp.ascontiguousarray(b)
    kernel = conv_transpose2d if transposed else conv2d
    scalars = (stride[0], stride[1], pad_begin[0], pad_begin[1], dilation[0], dilation[1], groups)
    if num_threads is None:
        kernel(x, w, b, _as_2d(out, nd), *scalars)
    else:
        kernel(x, w, b, _as_2d(out, nd), *scalars, num_threads)
    return scalars


# Plans of validated numpy (and cupy) calls: a repeated call (same shapes, dtypes and arguments, as in
# inference) skips the checks and shape arithmetic above, which cost more than a tiny kernel.
# A plan holds only what those checks derived; only exact ints, tuples of ints and strings
# enter a key, so that no value torch rejects (True, 1.0) can alias an accepted one.
_PLANS = {}
_PLANS_MAX = 256


def _plan_key(fn, x, w, b, scalars):
    """The plan key of a call on C-contiguous numpy (or cupy) operands of one array type, else None."""
    array_type = type(x)
    if array_type is not np.ndarray and not is_cupy(x):
        return None
    if type(w) is not array_type or not (x.flags.c_contiguous and w.flags.c_contiguous):
        return None
    if b is None:
        b_key = None
    elif type(b) is array_type:
        b_key = (b.shape, b.dtype)
    else:
        return None
    # only exact ints, strings and tuples of ints (inlined: this runs on every call)
    for value in scalars:
        kind = type(value)
        if kind is not int and kind is not str:
            if kind is not tuple:
                return None
            for item in value:
                if type(item) is not int:
                    return None
    return (fn, array_type, x.shape, x.dtype, w.shape, w.dtype, b_key) + scalars


def _store_plan(key, transposed, x, w, out, nd, unbatched, kernel_args, xp):
    """Remember a validated call: output shape, the kernel's operand shapes where the caller's
    arrays need reshaping, and the kernel with its scalar arguments."""
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    kernel = shapes = None
    if kernel_args is not None:
        conv2d, conv_transpose2d, _ = _backend(xp)
        kernel = conv_transpose2d if transposed else conv2d
        if nd == 1 or unbatched:  # the kernels get batched 2-D views of these operands
            shapes = tuple(a.shape[:2] + (1,) + a.shape[2:] if nd == 1 else a.shape for a in (x, w, out))
    _PLANS[key] = (kernel, out.shape, out.nbytes, unbatched, shapes, kernel_args, xp)


_NO_BIAS = {dtype: np.empty(0, dtype) for dtype in (np.dtype(np.float32), np.dtype(np.float64))}


def _run_plan(plan, x, w, b):
    kernel, out_shape, nbytes, unbatched, shapes, kernel_args, xp = plan
    if xp is not np:
        return _run_gpu_plan(plan, x, w, b)
    out = np.empty(out_shape, x.dtype) if nbytes < _outputs.POOL_MIN_BYTES else _outputs.empty(out_shape, x.dtype, nbytes)
    if kernel is not None:
        b = _NO_BIAS[x.dtype] if b is None else np.ascontiguousarray(b)
        if shapes is None:
            kernel(x, w, b, out, *kernel_args, get_num_threads())
        else:
            kernel(x.reshape(shapes[0]), w.reshape(shapes[1]), b, out.reshape(shapes[2]), *kernel_args,
                   get_num_threads())
    return out[0] if unbatched else out


def _run_gpu_plan(plan, x, w, b):
    """``_run_plan`` for cupy operands: cupy output, GPU kernels (no thread count)."""
    kernel, out_shape, _, unbatched, shapes, kernel_args, xp = plan
    out = xp.empty(out_shape, x.dtype)
    if kernel is not None:
        b = xp.empty(0, x.dtype) if b is None else xp.ascontiguousarray(b)
        if shapes is None:
            kernel(x, w, b, out, *kernel_args)
        else:
            kernel(x.reshape(shapes[0]), w.reshape(shapes[1]), b, out.reshape(shapes[2]), *kernel_args)
    return out[0] if unbatched else out
