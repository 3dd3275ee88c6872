"""The libtorch calls R torch makes, on numpy arrays, with R torch's argument conversions.

No rpy2 here: the functions take what the bridge makes of R values (numbers as lists of floats,
character vectors as :class:`Chars`, R lists as Python lists, tensors as numpy arrays) and return
numpy arrays. Convolution arithmetic is convcore's; what is done here is what R torch's C++ layer
and libtorch do around it: int64 conversion (truncation), at::pad's padding, the RNG.
"""
import math

import numpy as np

import convcore

_DTYPES = {"float32": np.float32, "float64": np.float64}


class LibtorchError(Exception):
    """An error R torch reports from C++ (R class ``Rcpp::exception``); the text is libtorch's."""


class Chars(list):
    """An R character vector."""


def _flatten(value):
    if isinstance(value, list) and not isinstance(value, Chars):
        return [v for item in value for v in _flatten(item)]
    return [value]


def int_array(value, name):
    """An R value as libtorch's IntArrayRef: doubles truncated toward zero (the int64 cast)."""
    items = _flatten(value)
    if any(isinstance(v, (str, Chars)) or v is None for v in items):
        raise LibtorchError(f"Can't convert argument:{name}")
    try:
        return [int(v) for v in items]
    except (ValueError, OverflowError, TypeError):  # NA/NaN/Inf
        raise LibtorchError(f"Can't convert argument:{name}") from None


def int_scalar(value, name):
    items = int_array(value, name)
    if len(items) != 1:
        raise LibtorchError(f"Can't convert argument:{name}")
    return items[0]


def _padding_arg(value):
    """conv2d's padding: a string picks libtorch's string overload, numbers the IntArrayRef one."""
    if isinstance(value, Chars):
        return value[0]
    return int_array(value, "padding")


def _libtorch(fn, *args):
    """Call convcore; its ValueError/TypeError messages are libtorch's texts."""
    try:
        return fn(*args)
    except (ValueError, TypeError, MemoryError) as exc:
        raise LibtorchError(str(exc)) from None


def _check_convolution(x, w, nd, groups, params):
    """at::_convolution's first checks, in its order: the number of spatial dims comes from the
    weight, groups is checked before the per-dim arguments are expanded, and the arguments are
    expanded in the order of ``params`` ((name, values) pairs). convcore checks the same things
    with the same texts but in another order, and the weight's rank first."""
    if x.ndim not in (nd + 1, nd + 2):
        return  # batchify's error comes first; convcore raises it
    dim = w.ndim - 2
    if dim <= 0:
        raise LibtorchError("weight should have at least three dimensions")
    if groups <= 0:
        raise LibtorchError("non-positive groups is not supported")
    for name, values in params:
        if len(values) not in (1, dim):
            raise LibtorchError(
                f"expected {name} to be a single integer value or a list of {dim} values to match "
                f"the convolution dimensions, but got {name}={_sizes(values)}"
            )
    if dim == nd:
        return
    # check_shape_forward, up to its weight/input rank check, which then fails
    batched = x.shape if x.ndim == nd + 2 else (1,) + x.shape
    values = dict(params)
    if any(p < 0 for p in values["padding"]):
        raise LibtorchError("negative padding is not supported")
    if any(p < 0 for p in values.get("output_padding", [])):
        raise LibtorchError("negative output_padding is not supported")
    if any(s <= 0 for s in values["stride"]):
        raise LibtorchError("non-positive stride is not supported")
    if any(d < 0 for d in values["dilation"]):
        raise LibtorchError("dilation should be greater than zero")
    raise LibtorchError(
        f"Expected {w.ndim}-dimensional input for {w.ndim}-dimensional weight {_sizes(w.shape)}, "
        f"but got {len(batched)}-dimensional input of size {_sizes(batched)} instead"
    )


def conv2d(x, w, b, stride, padding, dilation, groups):
    stride, padding = int_array(stride, "stride"), _padding_arg(padding)
    dilation, groups = int_array(dilation, "dilation"), int_scalar(groups, "groups")
    if not isinstance(padding, str):
        # at::conv2d hands at::convolution a fixed output_padding of {0, 0}
        _check_convolution(x, w, 2, groups, [("stride", stride), ("padding", padding),
                                             ("dilation", dilation), ("output_padding", [0, 0])])
    return _libtorch(convcore.conv2d, x, w, b, stride, padding, dilation, groups)


def _conv_transpose(fn, nd, x, w, b, stride, padding, output_padding, groups, dilation):
    if isinstance(padding, Chars):
        raise LibtorchError("Can't convert argument:padding")
    stride, padding = int_array(stride, "stride"), int_array(padding, "padding")
    output_padding = int_array(output_padding, "output_padding")
    groups, dilation = int_scalar(groups, "groups"), int_array(dilation, "dilation")
    _check_convolution(x, w, nd, groups, [("stride", stride), ("padding", padding),
                                          ("dilation", dilation),
                                          ("output_padding", output_padding)])
    return _libtorch(fn, x, w, b, stride, padding, output_padding, groups, dilation)


def conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation):
    return _conv_transpose(convcore.conv_transpose2d, 2, x, w, b, stride, padding, output_padding,
                           groups, dilation)


def conv_transpose1d(x, w, b, stride, padding, output_padding, groups, dilation):
    return _conv_transpose(convcore.conv_transpose1d, 1, x, w, b, stride, padding, output_padding,
                           groups, dilation)


# ---- at::pad ---------------------------------------------------------------------------------

def _sizes(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_valid_input(x, pad, nd):
    """libtorch's padding::check_valid_input<nd> (reflect and replicate)."""
    if len(pad) != 2 * nd:
        raise LibtorchError(f"padding size is expected to be {2 * nd}, but got: {len(pad)}")
    batched = x.ndim == nd + 2
    dims = x.shape[1:] if batched else x.shape
    if not (x.ndim in (nd + 1, nd + 2) and all(dims)):
        raise LibtorchError(
            f"Expected {nd + 1}D or {nd + 2}D (batch mode) tensor with possibly 0 batch size and "
            f"other non-zero dimensions for input, but got: {_sizes(x.shape)}"
        )


def _pairs(pad, nd):
    """pad is (last-dim begin, last-dim end, previous-dim begin, ...); returns (begin, end) per
    spatial dim, first spatial dim first."""
    return [(pad[2 * (nd - 1 - i)], pad[2 * (nd - 1 - i) + 1]) for i in range(nd)]


def _check_reflect(x, pad, nd):
    _check_valid_input(x, pad, nd)
    spatial = x.shape[x.ndim - nd:]
    for i in reversed(range(nd)):  # the last dimension is checked first
        before, after = _pairs(pad, nd)[i]
        if before >= spatial[i] or after >= spatial[i]:
            raise LibtorchError(
                f"Argument #{4 + 2 * (nd - 1 - i)}: Padding size should be less than the "
                f"corresponding input dimension, but got: padding ({before}, {after}) at dimension "
                f"{x.ndim - nd + i} of input {_sizes(x.shape)}"
            )
    _check_output(x, pad, nd, "")


def _check_output(x, pad, nd, space):
    spatial = x.shape[x.ndim - nd:]
    out = [s + b + a for s, (b, a) in zip(spatial, _pairs(pad, nd))]
    if all(o < 1 for o in out):
        names = "DHW"[3 - nd:]
        given = ", ".join(f"{n}: {s}" for n, s in zip(names, spatial))
        calc = " ".join(f"{n}: {o}" for n, o in zip(names, out))
        raise LibtorchError(f"input ({given}{space}) is too small. Calculated output {calc}")


def _check_circular(x, pad):
    nd = len(pad) // 2
    lead = x.ndim - nd
    if lead not in (1, 2):
        raise LibtorchError(
            "Invalid padding size, expected 1 or 2 non-padded dimensions, which would be "
            f"equivalent to padding of length {(x.ndim - 1) * 2} or {(x.ndim - 2) * 2} "
            f"respectively but got {len(pad)}"
        )
    for i, (before, after) in enumerate(_pairs(pad, nd)):
        size = x.shape[lead + i]
        if before > size or after > size:
            raise LibtorchError("Padding value causes wrapping around more than once.")
        if size + before + after < 0:
            raise LibtorchError("Negative padding value is resulting in an empty dimension")


def _source_index(size, before, after, mode):
    """For each output position along one dim, the input position it copies."""
    if mode == "circular":
        # libtorch crops by the negative pads first and wraps around what is left
        start, kept = max(-before, 0), size + min(before, 0) + min(after, 0)
        return start + np.arange(-max(before, 0), kept + max(after, 0)) % max(kept, 1)
    j = np.arange(-before, size + after)  # negative pads crop
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j >= size, 2 * (size - 1) - j, j)
    if mode == "replicate":
        return np.clip(j, 0, size - 1)
    return j  # constant: positions outside [0, size) are filled afterwards


def _check_allocatable(x, pad, nd, mode):
    """What allocating a padded output with a negative size raises in libtorch."""
    spatial = x.shape[x.ndim - nd:]
    out = list(x.shape[:x.ndim - nd]) + [s + b + a for s, (b, a) in zip(spatial, _pairs(pad, nd))]
    negative = [o for o in out if o < 0]
    if negative:
        if mode == "reflect":
            raise LibtorchError("numel: integer multiplication overflow")
        raise LibtorchError(
            f"Trying to create tensor with negative dimension {negative[0]}: {_sizes(out)}"
        )


def pad(x, pad, mode, value):
    """at::pad(input, pad, mode, value) as R torch's nnf_pad calls it."""
    pad = int_array(pad, "pad")
    mode = mode[0]
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise LibtorchError(f"Unrecognised padding mode {mode}")
    if len(pad) % 2:
        raise LibtorchError("Padding length must be divisible by 2")
    if len(pad) > 2 * x.ndim:
        raise LibtorchError(
            "Padding length should be less than or equal to two times the input dimension but got "
            f"padding length {len(pad)} and input of dimension {x.ndim}"
        )
    value = 0.0 if value is None else float(value[0])
    nd = len(pad) // 2
    if mode == "constant":
        # constant_pad_nd narrows by the negative pads first
        for size, (before, after) in zip(x.shape[x.ndim - nd:], _pairs(pad, nd)):
            if size + min(before, 0) + min(after, 0) < 0:
                raise LibtorchError("narrow(): length must be non-negative.")
    else:
        if value != 0:
            raise LibtorchError(f'Padding mode "{mode}" doesn\'t take in value argument')
        if not (1 <= nd <= 3 and x.ndim in (nd + 1, nd + 2)):
            raise LibtorchError(
                "Only 2D, 3D, 4D, 5D padding with non-constant padding are supported for now"
            )
        if mode == "reflect":
            _check_reflect(x, pad, nd)
        elif mode == "replicate":
            _check_valid_input(x, pad, nd)
            _check_output(x, pad, nd, " ")
        else:
            _check_circular(x, pad)
        _check_allocatable(x, pad, nd, mode)
    out = x
    for i, (before, after) in enumerate(_pairs(pad, nd)):
        axis = x.ndim - nd + i
        idx = _source_index(x.shape[axis], before, after, mode)
        if mode == "constant":
            inside = (idx >= 0) & (idx < x.shape[axis])
            out = np.take(out, np.clip(idx, 0, max(x.shape[axis] - 1, 0)), axis=axis)
            shape = [1] * x.ndim
            shape[axis] = len(idx)
            out = np.where(inside.reshape(shape), out, out.dtype.type(value))
        else:
            out = np.take(out, idx, axis=axis)
    return np.ascontiguousarray(out)


# ---- tensors and the RNG -----------------------------------------------------------------------

_rng = np.random.default_rng()


def manual_seed(seed):
    """torch_manual_seed(): reseeds r_compat's generator (a numpy PCG64, not torch's mt19937)."""
    global _rng
    _rng = np.random.default_rng(int_scalar(seed, "seed"))


def _shape(size, name):
    shape = int_array(size, name)
    for d in shape:
        if d < 0:
            raise LibtorchError(
                f"Trying to create tensor with negative dimension {d}: {_sizes(shape)}"
            )
    return shape


def randn(size, dtype):
    return _rng.standard_normal(_shape(size, "size")).astype(_DTYPES[dtype[0]])


def _uniform_(shape, bound):
    """tensor$uniform_(-bound, bound) on a float32 tensor. libtorch checks the bounds even for an
    empty tensor, and R torch (unlike PyTorch's init) does not skip empty weights: fan_in 0 (zero
    in_channels or kernel size) makes the bound inf, an error."""
    if not bound <= float(np.finfo(np.float32).max):
        raise LibtorchError("from is out of bounds for float")
    return _rng.uniform(-bound, bound, shape).astype(np.float32)


def init_parameters(weight_size, bias_size):
    """torch_empty() the parameters, then nn_conv_nd's reset_parameters(): kaiming_uniform_(a =
    sqrt(5)) on the weight, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), then the bias from the same
    bound. fan_in = weight dim 2 * prod(kernel). The weight is drawn first."""
    w_shape = _shape(weight_size, "size")
    b_shape = None if bias_size is None else _shape(bias_size, "size")
    fan_in = math.prod(w_shape[1:])
    bound = 1 / math.sqrt(fan_in) if fan_in else math.inf
    weight = _uniform_(w_shape, bound)
    bias = None if b_shape is None else _uniform_(b_shape, bound)
    return {"weight": weight, "bias": bias}


def round_float32(data):
    return data.astype(np.float32).astype(np.float64)


def copy(dst, src, dtype):
    """dst$copy_(src): src broadcast to dst's shape (libtorch's rule and text), in dst's dtype."""
    try:
        out = np.broadcast_to(src, dst.shape)
    except ValueError:
        a, b = dst.shape[::-1], src.shape[::-1]
        for i, (da, db) in enumerate(zip(a, b)):
            if db not in (1, da):
                raise LibtorchError(
                    f"The size of tensor a ({da}) must match the size of tensor b ({db}) at "
                    f"non-singleton dimension {len(dst.shape) - 1 - i}"
                ) from None
        raise LibtorchError(
            f"output with shape {_sizes(dst.shape)} doesn't match the broadcast shape "
            f"{_sizes(np.broadcast_shapes(dst.shape, src.shape))}"
        ) from None
    return out.astype(_DTYPES[dtype[0]]).astype(np.float64)
