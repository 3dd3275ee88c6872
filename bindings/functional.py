"""The functional API: torch.nn.functional's conv functions on numpy (and cupy) arrays."""
from ._conv import conv_transpose, convolution

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """1-D cross-correlation of ``input`` (N, C_in, L) or (C_in, L) with ``weight`` (C_out, C_in/groups, K).

    ``padding`` is an int, a 1-tuple, ``"valid"`` or ``"same"``; ``padding_mode`` (an addition to
    torch's functional signature, with nn.Conv1d's meaning) is zeros, reflect, replicate or circular.
    Returns an array of the input's dtype and array module.
    """
    return convolution(input, weight, bias, stride, padding, dilation, groups, padding_mode, 1, "conv1d")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """2-D cross-correlation of ``input`` (N, C_in, H, W) or (C_in, H, W) with ``weight``
    (C_out, C_in/groups, kH, kW), exactly as ``torch.nn.functional.conv2d``.

    ``padding`` is an int, a pair, ``"valid"`` or ``"same"`` (stride 1 only; an odd total is split with
    the extra element at the end, as torch does); ``padding_mode`` is zeros, reflect, replicate or circular.
    """
    return convolution(input, weight, bias, stride, padding, dilation, groups, padding_mode, 2, "conv2d")


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution of ``input`` (N, C_in, L) or (C_in, L) with ``weight``
    (C_in, C_out/groups, K): the adjoint of conv1d, as ``torch.nn.functional.conv_transpose1d``."""
    return conv_transpose(
        input, weight, bias, stride, padding, output_padding, groups, dilation, 1, "conv_transpose1d"
    )


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution of ``input`` (N, C_in, H, W) or (C_in, H, W) with ``weight``
    (C_in, C_out/groups, kH, kW), as ``torch.nn.functional.conv_transpose2d``.

    Output size per dimension: ``(in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.
    """
    return conv_transpose(
        input, weight, bias, stride, padding, output_padding, groups, dilation, 2, "conv_transpose2d"
    )
