"""Slow, obviously correct numpy references for the kernel contract (convcore/_kernels/__init__.py).

A loop over kernel offsets; each offset is one strided slice and one tensordot per group.
"""
import numpy as np


def conv2d_ref(x, w, bias, out_shape, stride, pad, dilation, groups):
    """Correlation of x (N, C, H, W) with w (Co, C/g, KH, KW); pad = (top, left); out_shape = (OH, OW)."""
    n, c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    oh, ow = out_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    # zero-pad generously so every tap reads inside the array
    big_h = max(h + ph, (oh - 1) * sh + (kh - 1) * dh + 1)
    big_w = max(wd + pw, (ow - 1) * sw + (kw - 1) * dw + 1)
    xp = np.zeros((n, c, big_h, big_w), dtype=np.float64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    cog = co // groups
    out = np.zeros((n, co, oh, ow), dtype=np.float64)
    for g in range(groups):
        xg = xp[:, g * cig:(g + 1) * cig]
        wg = w[g * cog:(g + 1) * cog].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
                out[:, g * cog:(g + 1) * cog] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out


def conv_transpose2d_ref(x, w, bias, out_shape, stride, pad, dilation, groups):
    """Scatter form of the transposed conv: w is (C_in, C_out/g, KH, KW); pad = (top, left)."""
    n, c, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cig = c // groups
    oh, ow = out_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    big_h = max(oh + ph, (h - 1) * sh + (kh - 1) * dh + 1)
    big_w = max(ow + pw, (wd - 1) * sw + (kw - 1) * dw + 1)
    full = np.zeros((n, cog * groups, big_h, big_w), dtype=np.float64)
    for g in range(groups):
        xg = x[:, g * cig:(g + 1) * cig].astype(np.float64)
        wg = w[g * cig:(g + 1) * cig].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("nchw,co->nohw", xg, wg[:, :, i, j])
                full[:, g * cog:(g + 1) * cog, i * dh:i * dh + (h - 1) * sh + 1:sh,
                     j * dw:j * dw + (wd - 1) * sw + 1:sw] += contrib
    out = full[:, :, ph:ph + oh, pw:pw + ow]
    if out.shape[2:] != (oh, ow):  # output_padding beyond the scattered area reads zeros
        padded = np.zeros((n, cog * groups, oh, ow))
        padded[:, :, :out.shape[2], :out.shape[3]] = out
        out = padded
    out = out.copy()
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out
