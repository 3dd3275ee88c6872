"""Dtype policy and array-module dispatch (numpy on the CPU, cupy on the GPU).

The one rule: input, weight and bias share one dtype, float32 or float64, and the output has it.
"""
import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_cupy(a):
    # Checked by module name so that numpy users never import cupy.
    return type(a).__module__.split(".", 1)[0] == "cupy"


def _as_array(value, name, fn, xp):
    if xp is np:
        if is_cupy(value):
            raise TypeError(f"{fn}(): '{name}' is a cupy array but input is not; use one device")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{fn}(): argument '{name}' must be an array of floats: {exc}") from None
    else:
        if not is_cupy(value):
            raise TypeError(
                f"{fn}(): input is a cupy array but '{name}' is {type(value).__name__}; use one device"
            )
        arr = value
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}(): argument '{name}' must have dtype float32 or float64, got {arr.dtype}"
        )
    return arr


def result_dtype(dtypes, names, fn):
    """The common dtype of the operands; mixing float32 and float64 is an error, as in torch."""
    first = dtypes[0]
    for dtype, name in zip(dtypes[1:], names[1:]):
        if dtype != first:
            raise TypeError(
                f"{fn}(): {names[0]} ({first}) and {name} ({dtype}) must have the same dtype"
            )
    return first


def as_operands(input, weight, bias, fn):
    """(x, w, b, xp) with validated dtypes; ``b`` is None when there is no bias."""
    nd = np.ndarray
    if type(input) is nd and type(weight) is nd and (bias is None or type(bias) is nd):
        # the common case, decided without conversions
        dtype = input.dtype
        if dtype in FLOAT_DTYPES and weight.dtype == dtype and (bias is None or bias.dtype == dtype):
            return input, weight, bias, np
    xp = np
    if is_cupy(input):
        import cupy as xp  # only reached by cupy users
    x = _as_array(input, "input", fn, xp)
    w = _as_array(weight, "weight", fn, xp)
    if bias is None:
        result_dtype((x.dtype, w.dtype), ("input", "weight"), fn)
        return x, w, None, xp
    b = _as_array(bias, "bias", fn, xp)
    result_dtype((x.dtype, w.dtype, b.dtype), ("input", "weight", "bias"), fn)
    return x, w, b, xp
