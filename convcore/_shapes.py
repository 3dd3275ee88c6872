"""Output-size formulas: the one source of truth for every size convcore computes.

All functions work per spatial dimension on plain Python ints (no overflow).
"""


def conv_out_size(in_size, kernel, stride, pad_begin, pad_end, dilation):
    """Length of a convolution output along one dimension (may be <= 0 for invalid calls)."""
    return (in_size + pad_begin + pad_end - dilated_kernel(kernel, dilation)) // stride + 1


def conv_transpose_out_size(in_size, kernel, stride, padding, output_padding, dilation):
    """Length of a transposed convolution output along one dimension."""
    return (in_size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def same_padding(kernel, dilation):
    """(begin, end) padding of ``padding='same'``: the extra element goes at the end, as in torch."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def dilated_kernel(kernel, dilation):
    """Extent of a dilated kernel: the smallest (padded) input it fits."""
    return dilation * (kernel - 1) + 1
