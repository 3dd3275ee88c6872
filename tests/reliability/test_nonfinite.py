"""NaN and Inf propagate exactly as in torch, on every kernel path: the same NaN positions, the same
infinities with the same signs. Zero padding counts as stored zeros (0 * Inf is NaN), zero weights
are multiplied, not skipped, and a transposed convolution adds only the products of real input
elements (output positions no input element reaches hold the bias, even next to an Inf weight).

The oracle is torch in float64 for both dtypes: that is torch's reference algorithm. In float32
torch's CPU backend (oneDNN) skips the taps that fall into zero padding, so next to an Inf weight
it gives finite border values where its own float64 path gives NaN; convcore is consistent.
"""
import numpy as np
import pytest
from relutil import convcore_conv, torch_conv

# name: (op, x shape, w shape, kwargs); names say which kernel path the shapes select
CASES = {
    "conv2d 1x1 gemm": ("conv2d", (2, 4, 5, 6), (3, 4, 1, 1), {}),
    "conv2d im2col": ("conv2d", (2, 4, 6, 7), (5, 4, 3, 3), dict(padding=1)),
    "conv2d im2col strided dilated": ("conv2d", (1, 6, 9, 8), (8, 3, 3, 2), dict(stride=2, dilation=2, padding=2, groups=2)),
    "conv2d direct depthwise": ("conv2d", (2, 4, 7, 7), (4, 1, 3, 3), dict(padding=1, groups=4)),
    "conv2d direct strided": ("conv2d", (1, 2, 9, 9), (2, 2, 3, 3), dict(stride=2, padding=2)),
    "conv2d reflect": ("conv2d", (1, 3, 6, 6), (4, 3, 3, 3), dict(padding=1, padding_mode="reflect")),
    "conv2d same circular": ("conv2d", (1, 2, 5, 6), (2, 2, 2, 3), dict(padding="same", padding_mode="circular")),
    "conv1d": ("conv1d", (2, 3, 11), (4, 3, 3), dict(padding=2, dilation=2)),
    "conv_transpose2d direct": ("conv_transpose2d", (1, 2, 4, 5), (2, 3, 3, 3), dict(stride=2)),
    "conv_transpose2d stride 1": ("conv_transpose2d", (1, 8, 4, 5), (8, 8, 3, 3), dict(padding=1)),
    "conv_transpose2d subpixel": ("conv_transpose2d", (1, 8, 4, 5), (8, 8, 3, 3), dict(stride=2, output_padding=1)),
    "conv_transpose2d stride beyond kernel": ("conv_transpose2d", (1, 8, 4, 4), (8, 8, 2, 2), dict(stride=3, output_padding=2)),
    "conv_transpose2d subpixel dilated": ("conv_transpose2d", (1, 8, 4, 4), (8, 8, 3, 3), dict(stride=2, dilation=2)),
    # weights too large to repack per call (> 32 MiB)
    "conv_transpose2d col2im": ("conv_transpose2d", (1, 1024, 2, 3), (1024, 1024, 3, 3), dict(stride=2, dilation=2)),
    "conv_transpose1d": ("conv_transpose1d", (2, 3, 6), (3, 4, 3), dict(stride=3, padding=1)),
}


def poisoned(case, poison, dtype):
    op, x_shape, w_shape, kwargs = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    n_out = w_shape[1] * kwargs.get("groups", 1) if "transpose" in op else w_shape[0]
    b = rng.standard_normal(n_out).astype(dtype)
    x.flat[[0, x.size // 2, x.size - 1]] = {"x": [np.nan, np.inf, -np.inf]}.get(poison, x.flat[[0, x.size // 2, -1]])
    if poison == "w":
        w.flat[[0, w.size - 1]] = [np.inf, np.nan]
    if poison == "w -inf":  # with the padding and the zeros below: 0 * -Inf
        w.flat[w.size // 2] = -np.inf
    if poison == "bias":
        b[[0, -1]] = [np.nan, -np.inf]
    if poison == "x inf, zero weights":  # a fast path that skips zero weights would lose the NaNs
        x.flat[x.size // 3] = np.inf
        w[...] = 0
    return op, x, w, b, kwargs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("poison", ["x", "w", "w -inf", "bias", "x inf, zero weights"])
@pytest.mark.parametrize("name", CASES)
def test_nan_and_inf_propagate_as_in_torch(name, poison, dtype):
    op, x, w, b, kwargs = poisoned(CASES[name], poison, dtype)
    got = convcore_conv(op, x, w, b, **kwargs)
    ref = torch_conv(op, x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kwargs)
    assert got.shape == ref.shape
    assert np.isnan(ref).any() or np.isinf(ref).any(), "the case must produce non-finite values"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg="NaN positions differ")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref), err_msg="Inf positions differ")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(np.sign(got[inf]), np.sign(ref[inf]), err_msg="Inf signs differ")
    finite = np.isfinite(ref)
    scale = np.abs(ref[finite]).max(initial=1.0)
    tol = (1e-4 if dtype == np.float32 else 1e-11) * scale
    np.testing.assert_allclose(got[finite], ref[finite], rtol=0, atol=tol)
