"""The sanitizer corpus: one public-API call per kind of input the kernels must survive, checked
against torch, for both dtypes and for 1 and 3 threads (same bits).

tests/sanitize.sh runs it (with tests/kernels and tests/api) under AddressSanitizer and UBSan; the
names say what each case reaches: every dispatcher branch, groups, dilation, padding modes,
unbatched input, N = 0, odd sizes, sizes of 1, views.
"""
import numpy as np
import pytest
from relutil import assert_matches_torch, convcore_conv, torch_conv

import convcore

# name: (op, x shape, w shape, bias, kwargs)
CASES = {
    # conv2d paths
    "conv2d 1x1 gemm": ("conv2d", (2, 8, 5, 7), (6, 8, 1, 1), True, {}),
    "conv2d 1x1 strided": ("conv2d", (1, 3, 7, 6), (2, 3, 1, 1), False, dict(stride=2)),
    "conv2d 1x1 padded": ("conv2d", (1, 3, 4, 4), (5, 3, 1, 1), True, dict(padding=1)),
    "conv2d im2col": ("conv2d", (2, 5, 9, 11), (7, 5, 3, 3), True, dict(padding=1)),
    "conv2d im2col odd sizes": ("conv2d", (3, 7, 13, 17), (5, 7, 5, 3), True, dict(stride=(3, 2), padding=(2, 1))),
    "conv2d grouped dilated": ("conv2d", (2, 6, 10, 9), (8, 3, 3, 2), True, dict(groups=2, dilation=(2, 3), padding=(1, 2))),
    "conv2d depthwise direct": ("conv2d", (2, 6, 9, 9), (6, 1, 3, 3), True, dict(groups=6, padding=1)),
    "conv2d channel multiplier strided": ("conv2d", (1, 3, 11, 12), (6, 1, 3, 3), True, dict(groups=3, stride=2)),
    "conv2d few outputs direct": ("conv2d", (1, 5, 8, 8), (2, 5, 3, 3), True, dict(padding=2, dilation=2)),
    "conv2d direct wide rows": ("conv2d", (1, 1, 3, 2100), (1, 1, 3, 3), True, dict(padding=1)),
    "conv2d stride past direct limit": ("conv2d", (1, 2, 140, 140), (1, 2, 3, 3), True, dict(stride=65)),
    "conv2d extent past direct limit": ("conv2d", (1, 1, 4, 300), (1, 1, 1, 3), True, dict(dilation=(1, 130))),
    "conv2d kernel equals input": ("conv2d", (1, 2, 3, 5), (3, 2, 3, 5), True, {}),
    "conv2d kernel bigger than input": ("conv2d", (2, 2, 2, 3), (3, 2, 5, 6), True, dict(padding=2)),
    "conv2d all sizes one": ("conv2d", (1, 1, 1, 1), (1, 1, 1, 1), True, {}),
    "conv2d same even kernel": ("conv2d", (1, 3, 7, 8), (4, 3, 2, 4), True, dict(padding="same", dilation=(1, 2))),
    "conv2d valid": ("conv2d", (2, 3, 6, 5), (4, 3, 3, 3), False, dict(padding="valid")),
    "conv2d reflect": ("conv2d", (2, 3, 6, 7), (4, 3, 3, 3), True, dict(padding=(1, 2), padding_mode="reflect")),
    "conv2d replicate strided": ("conv2d", (1, 3, 5, 6), (4, 3, 3, 2), True, dict(padding=3, stride=2, padding_mode="replicate")),
    "conv2d circular grouped": ("conv2d", (1, 4, 5, 5), (4, 2, 3, 3), True, dict(padding=2, groups=2, padding_mode="circular")),
    "conv2d same reflect": ("conv2d", (1, 2, 6, 6), (3, 2, 4, 3), True, dict(padding="same", padding_mode="reflect")),
    "conv2d unbatched": ("conv2d", (3, 8, 9), (4, 3, 3, 3), True, dict(padding=1)),
    "conv2d unbatched circular": ("conv2d", (2, 5, 5), (2, 2, 3, 3), False, dict(padding=1, padding_mode="circular")),
    "conv2d empty batch": ("conv2d", (0, 3, 5, 5), (4, 3, 3, 3), True, {}),
    "conv2d threaded": ("conv2d", (2, 32, 24, 24), (32, 32, 3, 3), True, dict(padding=1)),
    "conv2d threaded depthwise": ("conv2d", (4, 32, 40, 40), (32, 1, 5, 5), True, dict(padding=2, groups=32)),
    # conv1d
    "conv1d": ("conv1d", (2, 4, 20), (5, 4, 3), True, {}),
    "conv1d strided dilated padded": ("conv1d", (3, 4, 41), (5, 4, 3), True, dict(stride=2, padding=1, dilation=3)),
    "conv1d depthwise": ("conv1d", (2, 6, 17), (6, 1, 5), True, dict(groups=6, padding=2)),
    "conv1d same": ("conv1d", (1, 3, 10), (2, 3, 4), True, dict(padding="same")),
    "conv1d reflect": ("conv1d", (2, 3, 9), (2, 3, 3), True, dict(padding=2, padding_mode="reflect")),
    "conv1d replicate": ("conv1d", (2, 3, 9), (2, 3, 3), True, dict(padding=4, padding_mode="replicate")),
    "conv1d circular": ("conv1d", (2, 3, 9), (2, 3, 3), True, dict(padding=3, padding_mode="circular")),
    "conv1d unbatched": ("conv1d", (3, 12), (4, 3, 3), True, {}),
    "conv1d length one": ("conv1d", (2, 3, 1), (4, 3, 1), True, {}),
    "conv1d empty batch": ("conv1d", (0, 3, 7), (4, 3, 3), False, {}),
    # conv_transpose2d paths
    "conv_transpose2d direct": ("conv_transpose2d", (2, 3, 5, 6), (3, 2, 3, 3), True, dict(stride=2)),
    "conv_transpose2d depthwise": ("conv_transpose2d", (1, 6, 5, 5), (6, 1, 3, 3), True, dict(groups=6, stride=2, padding=1)),
    "conv_transpose2d stride 1": ("conv_transpose2d", (2, 8, 5, 6), (8, 8, 3, 3), True, dict(padding=1)),
    "conv_transpose2d subpixel": ("conv_transpose2d", (2, 8, 5, 6), (8, 8, 3, 3), True, dict(stride=2, output_padding=1)),
    "conv_transpose2d stride beyond kernel": ("conv_transpose2d", (1, 8, 4, 4), (8, 8, 2, 2), True, dict(stride=3, output_padding=2)),
    "conv_transpose2d stride and dilation on separate axes": (
        "conv_transpose2d", (1, 8, 5, 6), (8, 8, 3, 3), True, dict(stride=(2, 1), dilation=(1, 2))),
    "conv_transpose2d subpixel dilated": ("conv_transpose2d", (1, 8, 5, 5), (8, 8, 3, 3), True, dict(stride=2, dilation=2)),
    "conv_transpose2d subpixel odd": ("conv_transpose2d", (2, 15, 7, 5), (15, 5, 3, 2), True,
                                      dict(stride=(3, 2), dilation=(2, 3), padding=(2, 1), output_padding=(1, 2), groups=3)),
    # weights too large to repack per call (> 32 MiB)
    "conv_transpose2d col2im": ("conv_transpose2d", (2, 1024, 3, 2), (1024, 1024, 3, 3), True,
                                dict(stride=2, dilation=2, padding=1)),
    "conv_transpose2d grouped": ("conv_transpose2d", (2, 8, 5, 5), (8, 6, 3, 3), True, dict(groups=2, stride=2)),
    "conv_transpose2d padding crops to one": ("conv_transpose2d", (1, 2, 1, 1), (2, 2, 3, 3), True, dict(padding=1)),
    "conv_transpose2d all sizes one": ("conv_transpose2d", (1, 1, 1, 1), (1, 1, 1, 1), True, {}),
    "conv_transpose2d unbatched": ("conv_transpose2d", (8, 4, 5), (8, 8, 3, 3), True, dict(stride=2)),
    "conv_transpose2d empty batch": ("conv_transpose2d", (0, 4, 5, 5), (4, 3, 3, 3), True, dict(stride=2)),
    "conv_transpose2d threaded": ("conv_transpose2d", (2, 32, 16, 16), (32, 16, 3, 3), True, dict(stride=2, padding=1)),
    "conv_transpose2d threaded dilated": ("conv_transpose2d", (2, 64, 16, 16), (64, 16, 3, 3), True,
                                          dict(stride=2, dilation=2, groups=2)),
    # conv_transpose1d
    "conv_transpose1d": ("conv_transpose1d", (2, 4, 9), (4, 5, 3), True, dict(stride=2, padding=1, output_padding=1)),
    "conv_transpose1d dilated": ("conv_transpose1d", (2, 6, 7), (6, 2, 3), True, dict(stride=3, dilation=2, groups=2)),
    "conv_transpose1d unbatched": ("conv_transpose1d", (4, 6), (4, 3, 2), False, {}),
    "conv_transpose1d length one": ("conv_transpose1d", (1, 3, 1), (3, 2, 1), True, {}),
    "conv_transpose1d empty batch": ("conv_transpose1d", (0, 3, 4), (3, 2, 2), True, {}),
}


def operands(case, dtype, view):
    op, x_shape, w_shape, bias, kwargs = case
    rng = np.random.default_rng(sum(x_shape) + 31 * sum(w_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    if view:  # a strided, read-only view: the API makes it contiguous before the kernel sees it
        x = np.repeat(x, 2, axis=-1)[..., ::2]
        x.flags.writeable = False
    w = rng.standard_normal(w_shape).astype(dtype)
    n_out = w_shape[1] * kwargs.get("groups", 1) if "transpose" in op else w_shape[0]
    b = rng.standard_normal(n_out).astype(dtype) if bias else None
    return op, x, w, b, kwargs


@pytest.mark.parametrize("view", [False, True], ids=["contiguous", "view"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CASES)
def test_corpus_matches_torch_for_any_thread_count(name, dtype, view):
    op, x, w, b, kwargs = operands(CASES[name], dtype, view)
    try:
        convcore.set_num_threads(1)
        one = convcore_conv(op, x, w, b, **kwargs)
        convcore.set_num_threads(3)
        three = convcore_conv(op, x, w, b, **kwargs)
    finally:
        convcore.set_num_threads(None)
    np.testing.assert_array_equal(one, three)
    if x.size == 0:  # torch's empty result: shape only
        assert one.shape == torch_conv(op, x, w, b, **kwargs).shape
    else:
        assert_matches_torch(op, one, x, w, b, **kwargs)
