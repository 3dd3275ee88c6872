"""Validation, shape computation and dispatch shared by the 1-D and 2-D functions.

Every check uses torch's rule, in libtorch's order, with libtorch's wording (so that the R layer
can pass messages through). 1-D calls become 2-D calls with a height of 1 before they reach a kernel.
"""
import numpy as np

from convcore import _shapes
from convcore._threads import get_num_threads

from . import _args
from ._arrays import as_operands

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


def _check_kernel_and_dilation(kernel, dilation, transposed):
    """The backends' late checks, in 2-D form also for 1-D calls."""
    k2, d2 = _pair(kernel, 1), _pair(dilation, 1)
    if min(k2) <= 0:
        raise ValueError(
            f"kernel size should be greater than zero, but got kernel_height: {k2[0]} kernel_width: {k2[1]}"
        )
    if min(d2) <= 0:
        got = f"dilation_height: {d2[0]}, dilation_width: {d2[1]}" if transposed else str(list(d2))
        raise ValueError(f"dilation should be greater than zero, but got {got}")


def _pad_explicitly(x, pads, mode, xp, unbatched):
    """Pad with reflect/replicate/circular (torch's F.pad rules) so the kernel sees zero padding."""
    nd = len(pads)
    shape = x.shape[1:] if unbatched else x.shape
    for d in reversed(range(nd)):  # F.pad checks the last dimension first
        before, after = pads[d]
        size = x.shape[2 + d]
        if mode == "reflect" and (before >= size or after >= size):
            raise ValueError(
                f"Argument #{4 + 2 * (nd - 1 - d)}: Padding size should be less than the corresponding "
                f"input dimension, but got: padding ({before}, {after}) at dimension "
                f"{len(shape) - nd + d} of input {list(shape)}"
            )
        if mode == "circular" and (before > size or after > size):
            raise ValueError("Padding value causes wrapping around more than once.")
    width = ((0, 0), (0, 0)) + tuple(pads)
    return xp.pad(x, width, mode=_NUMPY_PAD_MODE[mode])


def _to_kernel_layout(x, w, out, nd):
    """1-D operands (…, L) as 2-D views (…, 1, L)."""
    if nd == 1:
        return tuple(a.reshape(a.shape[:2] + (1,) + a.shape[2:]) for a in (x, w, out))
    return x, w, out


def _pair(values, neutral):
    """A 1-D call's (v,) as the 2-D (neutral, v)."""
    return (neutral, values[0]) if len(values) == 1 else values


def convolution(input, weight, bias, stride, padding, dilation, groups, padding_mode, nd, fn):
    x, w, b, xp = as_operands(input, weight, bias, fn)
    x, unbatched = _batched(x, nd, fn)
    stride = _args.as_tuple(stride, nd, "stride", fn)
    dilation = _args.as_tuple(dilation, nd, "dilation", fn)
    padding = _args.as_padding(padding, nd, fn, allow_strings=True)
    groups = _args.as_int(groups, "groups", fn)
    padding_mode = _args.as_padding_mode(padding_mode, fn)
    _check_weight_ndim(w, nd, fn, "(out_channels, in_channels/groups, *kernel_size)")
    _check_groups(groups)
    kernel = w.shape[2:]

    if padding == "same":
        if max(stride) != 1:
            raise ValueError("padding='same' is not supported for strided convolutions")
        pads = [_shapes.same_padding(k, d) for k, d in zip(kernel, dilation)]
    elif padding == "valid":
        pads = [(0, 0)] * nd
    else:
        pads = [(p, p) for p in padding]
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
    if padding_mode != "zeros" and any(p != (0, 0) for p in pads):
        x = _pad_explicitly(x, pads, padding_mode, xp, unbatched)
        pads = [(0, 0)] * nd
    padded = [s + p0 + p1 for s, (p0, p1) in zip(x.shape[2:], pads)]
    dilated = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if any(p < k for p, k in zip(padded, dilated)):
        raise ValueError(
            f"Calculated padded input size per channel: {_args.size_str(padded)}. "
            f"Kernel size: {_args.size_str(dilated)}. Kernel size can't be greater than actual input size"
        )
    _check_spatial(x)
    _check_kernel_and_dilation(kernel, dilation, transposed=False)
    out_sizes = [
        _shapes.conv_out_size(s, k, st, p0, p1, d)
        for s, k, st, (p0, p1), d in zip(x.shape[2:], kernel, stride, pads, dilation)
    ]
    if x.shape[1] == 0:  # torch returns an empty result with no channels (bias dropped)
        out = xp.empty((x.shape[0], 0, *out_sizes), dtype=x.dtype)
    else:
        out = xp.empty((x.shape[0], n_out, *out_sizes), dtype=x.dtype)
        if out.size:
            _run(xp, "conv", x, w, b, out, stride, [p0 for p0, _ in pads], dilation, groups, nd)
    return out[0] if unbatched else out


def conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, nd, fn):
    x, w, b, xp = as_operands(input, weight, bias, fn)
    x, unbatched = _batched(x, nd, fn)
    stride = _args.as_tuple(stride, nd, "stride", fn)
    padding = _args.as_padding(padding, nd, fn, allow_strings=False)
    output_padding = _args.as_tuple(output_padding, nd, "output_padding", fn)
    dilation = _args.as_tuple(dilation, nd, "dilation", fn)
    groups = _args.as_int(groups, "groups", fn)
    _check_weight_ndim(w, nd, fn, "(in_channels, out_channels/groups, *kernel_size)")
    _check_groups(groups)
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
    _check_kernel_and_dilation(kernel, dilation, transposed=True)
    op2, st2, dl2 = _pair(output_padding, 0), _pair(stride, 1), _pair(dilation, 1)
    if any(op >= s and op >= d for op, s, d in zip(op2, st2, dl2)):
        raise ValueError(
            "output padding must be smaller than either stride or dilation, but got "
            f"output_padding_height: {op2[0]} output_padding_width: {op2[1]} "
            f"stride_height: {st2[0]} stride_width: {st2[1]} "
            f"dilation_height: {dl2[0]} dilation_width: {dl2[1]}"
        )
    out_sizes = [
        _shapes.conv_transpose_out_size(s, k, st, p, op, d)
        for s, k, st, p, op, d in zip(x.shape[2:], kernel, stride, padding, output_padding, dilation)
    ]
    # torch lets an empty batch through with an empty (but not a negative) output size
    if min(out_sizes) < (0 if x.shape[0] == 0 else 1):
        in2, out2 = _pair(x.shape[2:], 1), _pair(out_sizes, 1)
        raise ValueError(
            f"Given input size per channel: {_args.size_str(in2)}. Calculated output size per "
            f"channel: {_args.size_str(out2)}. Output size is too small"
        )
    out = xp.empty((x.shape[0], n_out, *out_sizes), dtype=x.dtype)
    if out.size:
        _run(xp, "conv_transpose", x, w, b, out, stride, padding, dilation, groups, nd)
    return out[0] if unbatched else out


def _run(xp, op, x, w, b, out, stride, pad_begin, dilation, groups, nd):
    """Hand contiguous 2-D-layout operands to the backend kernel, which fills ``out``."""
    conv2d, conv_transpose2d, num_threads = _backend(xp)
    x = xp.ascontiguousarray(x)
    w = xp.ascontiguousarray(w)
    b = xp.empty(0, dtype=x.dtype) if b is None else xp.ascontiguousarray(b)
    x4, w4, out4 = _to_kernel_layout(x, w, out, nd)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, 1), _pair(pad_begin, 0), _pair(dilation, 1)
    kernel = conv2d if op == "conv" else conv_transpose2d
    if num_threads is None:
        kernel(x4, w4, b, out4, sh, sw, ph, pw, dh, dw, groups)
    else:
        kernel(x4, w4, b, out4, sh, sw, ph, pw, dh, dw, groups, num_threads)
