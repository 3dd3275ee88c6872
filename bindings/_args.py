"""Normalisation of the scalar arguments, with PyTorch's rules and messages.

Only Python/numpy integers are integers here: bool, float, None and arrays are rejected with a
TypeError naming the argument, as torch's argument parser does.
"""
from numbers import Integral

PADDING_STRINGS = ("valid", "same")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _is_int(value):
    return type(value) is int or (isinstance(value, Integral) and not isinstance(value, bool))


def as_int(value, name, fn):
    if not _is_int(value):
        raise TypeError(f"{fn}(): argument '{name}' must be int, not {type(value).__name__}")
    return int(value)


def as_ints(value, name, fn):
    """An int or a list/tuple of ints, as a tuple of Python ints (length checked by ``expand``)."""
    if type(value) is tuple and all(type(v) is int for v in value):
        return value  # the common case, checked cheaply
    if _is_int(value):
        return (int(value),)
    if not isinstance(value, (tuple, list)):
        raise TypeError(
            f"{fn}(): argument '{name}' must be an int or a tuple of ints, not {type(value).__name__}"
        )
    for item in value:
        if not _is_int(item):
            raise TypeError(
                f"{fn}(): argument '{name}' must be an int or a tuple of ints, "
                f"but found element of type {type(item).__name__}"
            )
    return tuple(int(v) for v in value)


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
