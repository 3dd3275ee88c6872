"""Normalisation of the scalar arguments, with PyTorch's rules and messages.

Only Python/numpy integers are integers here: bool, float, None and arrays are rejected with a
TypeError naming the argument, as torch's argument parser does.
"""
import operator
from numbers import Integral

PADDING_STRINGS = ("valid", "same")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


_INT64 = 2**63


def _index(value):
    """``operator.index(value)`` for integers (numpy ones and 0-d integer arrays included, as
    torch's parser takes them); None for anything else, bool included."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _in_int64(value, name, fn):
    if not -_INT64 <= value < _INT64:
        raise OverflowError(f"{fn}(): argument '{name}' is outside the int64 range: {value}")
    return value


def as_int(value, name, fn):
    v = _index(value)
    if v is None:
        raise TypeError(f"{fn}(): argument '{name}' must be int, not {type(value).__name__}")
    return _in_int64(v, name, fn)


def as_ints(value, name, fn):
    """An int or a list/tuple of ints, as a tuple of Python ints (length checked by ``expand``)."""
    if type(value) is int:
        return (_in_int64(value, name, fn),)
    if isinstance(value, Integral) and not isinstance(value, bool):  # numpy integers; not 0-d arrays
        return (_in_int64(int(value), name, fn),)
    if not isinstance(value, (tuple, list)):
        raise TypeError(
            f"{fn}(): argument '{name}' must be an int or a tuple of ints, not {type(value).__name__}"
        )
    ints = []
    for item in value:
        v = _index(item)
        if v is None:
            raise TypeError(
                f"{fn}(): argument '{name}' must be an int or a tuple of ints, "
                f"but found element of type {type(item).__name__}"
            )
        ints.append(_in_int64(v, name, fn))
    return tuple(ints)


def expand(values, n, name):
    """libtorch's expand_param_if_needed: 1 value is repeated, ``n`` values are kept."""
    if len(values) == n:
        return values
    if len(values) == 1:
        return values * n
    raise ValueError(
        f"expected {name} to be a single integer value or a list of {n} values to match the "
        f"convolution dimensions, but got {name}={list(values)}"
    )


def as_tuple(value, n, name, fn):
    """An int, or a list/tuple of 1 or ``n`` ints, as a tuple of ``n`` Python ints."""
    return expand(as_ints(value, name, fn), n, name)


def as_padding(value, fn, allow_strings):
    """A tuple of ints (length checked by ``expand``), or one of PADDING_STRINGS when ``allow_strings``."""
    if isinstance(value, str):
        if not allow_strings:
            raise TypeError(f"{fn}(): argument 'padding' must be tuple of ints, not str")
        if value not in PADDING_STRINGS:
            raise ValueError(f"Invalid padding string: '{value}'")
        return value
    return as_ints(value, "padding", fn)


def as_padding_mode(value, fn):
    if not isinstance(value, str):
        raise TypeError(f"{fn}(): argument 'padding_mode' must be str, not {type(value).__name__}")
    if value not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode='{value}'"
        )
    return value


def size_str(sizes):
    """torch's '(a x b)' rendering of per-channel sizes."""
    return "(" + " x ".join(str(s) for s in sizes) + ")"
