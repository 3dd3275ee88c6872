"""conv_transpose2d: the dispatcher, and the general path GEMM + col2im.

Contract: convcore/_kernels/__init__.py. ``conv_transpose2d`` picks one algorithm from the shapes
alone (never from num_threads, so every thread count gives the same bits); ``_path_for`` names it:

``"small"``     calls of a few thousand multiply-adds, where every other path's set-up would
                dominate: an output pixel at a time (conv_small)
``"direct"``    at most DIRECT_MAX_CHANNELS channels per group in and out (depthwise): direct
                vectorised loops, no GEMM (conv_transpose_direct)
``"stride1"``   stride 1: an ordinary conv2d (conv.pyx and its dispatcher) with the flipped kernel
                and swapped channels, padding d*(k-1)-p; where p > d*(k-1), the "full"
                correlation of conv_transpose_subpixel (im2col tile + GEMM straight into place)
``"subpixel"``  stride > 1: one dense correlation per output phase, GEMM per tile, each output
                written once (conv_transpose_subpixel), on input rows of 32+ (narrower: only
                reductions of 2048+, and not with dilation)
``"col2im"``    the rest of stride > 1 (narrow rows, stride and dilation > 1 on one axis with
                long reductions), outputs over twice stride x input (inputs smaller than the
                kernel), strides past the output size, weights too large to repack per call,
                or GEMM sizes beyond BLAS ints

The direct and sub-pixel kernels handle any stride and dilation (_transpose_phases.pxd); the
rules above only pick the fastest. Weights with NaN/Inf never take "stride1"/"subpixel" (see
``conv_transpose2d``), so non-finite values propagate exactly as in torch.

General path: a work item is (image, group, block of output channels); it owns those output planes, so
no two threads ever write the same element. It walks the input in tiles of consecutive
pixels: one GEMM gives the columns (co, kh, kw) x tile = W_g[:, block]^T X_g[:, tile] in the
thread's buffer, and col2im adds them into the planes, tile after tile in a fixed order. Planes
under MIN_TILE pixels are taken several images per item, their input planes copied side by side,
so that one GEMM serves them all.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.limits cimport INT_MAX
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from convcore._kernels._blas cimport gemm
from convcore._kernels._microkernel cimport CCB_NR_D, CCB_NR_F, PIXEL_MIN_K, pixel_lanes_full
from convcore._kernels._openmp cimport omp_get_thread_num
from convcore._kernels._tiling cimport BLAS_SERIAL_MNK, MACS_PER_BYTE, MIN_TILE, WANT_ITEMS, ceil_div, span_hi, span_lo, team_size, tile_pixels
from convcore._kernels._transpose_phases cimport max_phase_taps

from convcore._threads import blas_single_threaded
from convcore._kernels.conv import conv2d
from convcore._kernels.conv_small import conv2d_small, small_enough
from convcore._kernels.conv_transpose_direct import conv_transpose2d_direct
from convcore._kernels.conv_transpose_subpixel import conv_transpose2d_subpixel

DIRECT_MAX_CHANNELS = 4  # per group, in and out: below this a GEMM has nothing to chew on
# the sub-pixel kernel repacks the weights once per call; beyond this col2im reads them in place
PACKED_WEIGHTS_MAX_BYTES = 32 * 1024 * 1024
CONV_ROUTE_MIN_MACS = 1 << 20  # stride-1 calls with less work keep the in-module correlation
# strided calls go sub-pixel on input rows that the sub-pixel block source takes (at least a float32
# register block wide); on narrower rows only with deep GEMMs, and never with dilation too
SUBPIXEL_MIN_WIDTH = 32
NARROW_SUBPIXEL_MIN_K = 2048
DILATED_SUBPIXEL_MAX_K = 640  # stride with dilation: the block source's BLOCK_MAX_K
CORRELATION_MAX_EXCESS = 2  # output positions per stride x input position (see _path_for)

cdef Py_ssize_t _tile_bytes = 512 * 1024  # column buffer per thread: about one L2


def set_tile_bytes(Py_ssize_t nbytes):
    """Column-buffer budget per thread (for tests of tiling invariance); returns the old one."""
    global _tile_bytes
    old = _tile_bytes
    _tile_bytes = max(nbytes, 1)
    return old


cdef void col2im(const floating* col, Py_ssize_t ldc, Py_ssize_t nco, Py_ssize_t kh, Py_ssize_t kw,
                 Py_ssize_t wd, Py_ssize_t oh_n, Py_ssize_t ow_n,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t p0, Py_ssize_t p1,
                 floating* outg) noexcept nogil:
    """out[co, ih*sh - ph + i*dh, iw*sw - pw + j*dw] += col[(co, i, j)*ldc + p - p0] for p = ih*W + iw."""
    cdef Py_ssize_t co, i, j, p, ih, iw0, iw1, oy, off, lo, hi, iw
    cdef Py_ssize_t ohw = oh_n * ow_n
    cdef const floating* src
    cdef floating* dst
    for co in range(nco):
        for i in range(kh):
            for j in range(kw):
                src = col + ((co * kh + i) * kw + j) * ldc
                off = j * dw - pw
                # input columns whose tap j lands inside the row: 0 <= iw*sw + off < OW
                lo = span_lo(off, sw)
                hi = span_hi(off, sw, ow_n)
                p = p0
                while p < p1:
                    ih = p // wd
                    iw0 = p - ih * wd
                    iw1 = wd if wd - iw0 < p1 - p else iw0 + (p1 - p)
                    oy = ih * sh - ph + i * dh
                    if 0 <= oy < oh_n:
                        dst = outg + co * ohw + oy * ow_n + off
                        for iw in range(lo if lo > iw0 else iw0, hi if hi < iw1 else iw1):
                            dst[iw * sw] += src[iw - iw0]
                    src += iw1 - iw0
                    p = iw1 - iw0 + p


cdef int conv_transpose2d_impl(const floating* x, const floating* w, const floating* bias,
                               bint has_bias, floating* out, Py_ssize_t n, Py_ssize_t cin,
                               Py_ssize_t h, Py_ssize_t wd, Py_ssize_t cout, Py_ssize_t kh,
                               Py_ssize_t kw, Py_ssize_t oh_n, Py_ssize_t ow_n,
                               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                               Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                               int num_threads) except -1:
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups, kk = kh * kw
    cdef Py_ssize_t hw = h * wd
    if hw > INT_MAX or cog * kk > INT_MAX or cig > INT_MAX:
        raise ValueError("conv_transpose2d: an image plane or kernel exceeds the BLAS index range (2**31 - 1)")
    # Planes under MIN_TILE pixels are taken ib images at a time, their columns gathered side by
    # side, so that the GEMM is not a matrix-vector product per image (a 1x1 latent: 1.6x).
    cdef Py_ssize_t ib = min(n, ceil_div(MIN_TILE, hw)), nib
    # Output-channel blocks: whole groups when the images give enough work items, otherwise
    # split, but keep at least ~64 GEMM rows per block.
    nib = ceil_div(n, ib)
    cdef Py_ssize_t cob = max(ceil_div(cog, ceil_div(WANT_ITEMS, nib * groups)), ceil_div(64, kk))
    if cob > cog:
        cob = cog
    cdef Py_ssize_t nblocks = ceil_div(cog, cob)
    # tiles run one after another inside a work item, so only the buffer budget sizes them
    cdef Py_ssize_t tile = tile_pixels(hw * ib, cob * kk, sizeof(floating), _tile_bytes, WANT_ITEMS)
    if ib > 1:
        ib = max(1, tile // hw)  # whole images per GEMM, within the budget
        tile = hw
        nib = ceil_div(n, ib)
    cdef Py_ssize_t items = nib * groups * nblocks
    cdef int nt = team_size(num_threads, items, n * cin * hw * cog * kk + cin * cog * kk * sizeof(floating) * MACS_PER_BYTE)
    # per thread: the columns, then (several images) the gathered input
    cdef Py_ssize_t col_len = cob * kk * tile * ib + (cig * hw * ib if ib > 1 else 0)
    cdef floating* cols = <floating*>malloc(nt * col_len * sizeof(floating))
    if cols == NULL:
        raise MemoryError("cannot allocate the kernel's scratch memory")
    try:
        if nt > 1 or cob * kk * tile * cig >= BLAS_SERIAL_MNK:
            with blas_single_threaded():
                conv_transpose2d_items(x, w, bias, has_bias, out, cols, col_len, items, nblocks,
                                       cob, tile, ib, n, cin, h, wd, cout, kh, kw, oh_n, ow_n,
                                       sh, sw, ph, pw, dh, dw, groups, nt)
        else:
            conv_transpose2d_items(x, w, bias, has_bias, out, cols, col_len, items, nblocks,
                                   cob, tile, ib, n, cin, h, wd, cout, kh, kw, oh_n, ow_n,
                                   sh, sw, ph, pw, dh, dw, groups, nt)
    finally:
        free(cols)
    return 0


cdef void conv_transpose2d_items(const floating* x, const floating* w, const floating* bias,
                                 bint has_bias, floating* out, floating* cols, Py_ssize_t col_len,
                                 Py_ssize_t items, Py_ssize_t nblocks, Py_ssize_t cob,
                                 Py_ssize_t tile, Py_ssize_t ib, Py_ssize_t n, Py_ssize_t cin,
                                 Py_ssize_t h, Py_ssize_t wd,
                                 Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw,
                                 Py_ssize_t oh_n, Py_ssize_t ow_n,
                                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int nt) noexcept:
    """A work item: images img0 .. img0+ib-1 (ib > 1: whole planes, columns side by side), group
    g, output channels co0 .. co0+nco-1."""
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups, kk = kh * kw
    cdef Py_ssize_t hw = h * wd, ohw = oh_n * ow_n
    cdef Py_ssize_t item, img, img0, ni, g, ng, co0, nco, p0, p, q, co, ci, ldb
    cdef int tid
    cdef floating* col
    cdef floating* dst
    cdef floating* xb
    cdef floating b
    cdef const floating* src
    tid = 0  # thread-private inside the region; initialised so the compiler sees a value
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        for item in prange(items, schedule="dynamic"):
            col = cols + tid * col_len
            ng = item // nblocks
            img0 = ng // groups * ib
            g = ng - ng // groups * groups
            co0 = (item - ng * nblocks) * cob
            nco = min(cob, cog - co0)
            ni = min(ib, n - img0)
            for img in range(img0, img0 + ni):
                dst = out + (img * cout + g * cog + co0) * ohw
                for co in range(nco):
                    b = bias[g * cog + co0 + co] if has_bias else 0
                    for q in range(ohw):
                        dst[co * ohw + q] = b
            if ib > 1:
                # the images' planes side by side: one (cig, ni*hw) matrix
                xb = col + cob * kk * tile * ib
                for img in range(ni):
                    for ci in range(cig):
                        memcpy(xb + ci * ni * hw + img * hw, x + ((img0 + img) * cin + g * cig + ci) * hw,
                               hw * sizeof(floating))
                gemm(True, False, <int>(nco * kk), <int>(ni * hw), <int>cig, <floating>1,
                     w + (g * cig * cog + co0) * kk, <int>(cog * kk), xb, <int>(ni * hw),
                     <floating>0, col, <int>(ni * hw))
                for img in range(ni):
                    col2im(col + img * hw, ni * hw, nco, kh, kw, wd, oh_n, ow_n, sh, sw, ph, pw, dh, dw,
                           0, hw, out + ((img0 + img) * cout + g * cog + co0) * ohw)
                continue
            src = x + (img0 * cin + g * cig) * hw
            dst = out + (img0 * cout + g * cog + co0) * ohw
            p0 = 0
            while p0 < hw:
                p = min(tile, hw - p0)
                # columns = (W_g[:, co0:co0+nco] as (cig, nco*kk))^T @ X_g[:, p0:p0+p]
                gemm(True, False, <int>(nco * kk), <int>p, <int>cig, <floating>1,
                     w + (g * cig * cog + co0) * kk, <int>(cog * kk), src + p0, <int>hw,
                     <floating>0, col, <int>p)
                col2im(col, p, nco, kh, kw, wd, oh_n, ow_n, sh, sw, ph, pw, dh, dw, p0, p0 + p, dst)
                p0 = p0 + p


def _col2im(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
            const floating[::1] bias, floating[:, :, :, ::1] out,
            int sh, int sw, int ph, int pw, int dh, int dw, int groups, int num_threads):
    conv_transpose2d_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
                          bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1],
                          x.shape[2], x.shape[3], out.shape[1], w.shape[2], w.shape[3],
                          out.shape[2], out.shape[3], sh, sw, ph, pw, dh, dw, groups, num_threads)


def _path_for(x_shape, w_shape, out_hw, stride, dilation, Py_ssize_t groups, Py_ssize_t itemsize):
    """Name of the algorithm conv_transpose2d takes for these shapes (see the module docstring)."""
    cdef Py_ssize_t cin = x_shape[1], h = x_shape[2], wd = x_shape[3]
    cdef Py_ssize_t cig = cin // groups, cog = w_shape[1], kh = w_shape[2], kw = w_shape[3]
    cdef Py_ssize_t sh = stride[0], sw = stride[1], dh = dilation[0], dw = dilation[1]
    if small_enough(x_shape[0], groups, cig, cog, kh * kw, h * wd, out_hw[0] * out_hw[1], itemsize):
        return "small"
    # the phase kernels keep tables of `stride` entries per axis: past the output size most phases
    # are empty, and a stride of 2**31 - 1 would make the tables, not the output, the largest buffer
    if sh > out_hw[0] or sw > out_hw[1]:
        return "col2im"
    if cig <= DIRECT_MAX_CHANNELS and cog <= DIRECT_MAX_CHANNELS:
        return "direct"
    # the correlation paths compute each output from its phase's taps, about (output / stride)
    # x kernel products per input channel; col2im forms the input x kernel products. Inputs
    # smaller than the kernel make the first mostly products with padding (a 1x1 latent to
    # a 4x4 map: 16x the work, measured 4x slower than col2im)
    if <double>out_hw[0] * out_hw[1] > CORRELATION_MAX_EXCESS * (<double>sh * h) * (<double>sw * wd):
        return "col2im"
    cdef Py_ssize_t ksub = cig * max_phase_taps(kh, sh, dh) * max_phase_taps(kw, sw, dw)
    if sh > 1 or sw > 1:
        # stride with dilation on one axis splits the kernel into many small phases: worth it only
        # where the sub-pixel kernel reads them from its block source (rows of at least a register
        # block, short reductions): measured 1.1-1.6x faster than col2im there (3x3, s2, d2 or d3,
        # 32-64 channels, rows of 32-50), 1.2-1.4x slower on rows of 20 read through im2col
        if ((sh > 1 and dh > 1) or (sw > 1 and dw > 1)) and (
                wd < SUBPIXEL_MIN_WIDTH or ksub > DILATED_SUBPIXEL_MAX_K):
            return "col2im"
        # narrow rows: the sub-pixel im2col pays a set-up per short row, which only a deep GEMM
        # hides (4x4 s2 on 4x4 inputs over 256 channels: col2im 1.5x faster; on 8x8 over 512,
        # sub-pixel 1.2x faster); its pixel_gemm reads them in place where the output channels
        # fill its vectors and the phases' mean reduction is long enough (2x2 s2 over 512
        # channels on 16x16: 1.14x faster than col2im)
        if wd < SUBPIXEL_MIN_WIDTH and ksub < NARROW_SUBPIXEL_MIN_K and not (
                pixel_lanes_full(cog, CCB_NR_F if itemsize == 4 else CCB_NR_D)
                and cig * kh * kw >= PIXEL_MIN_K * sh * sw):
            return "col2im"
    # GEMM sizes of the sub-pixel kernel must fit BLAS ints: rows <= cog*sh*sw, depth <= cig*kh*kw
    if (cin * cog * kh * kw * itemsize > PACKED_WEIGHTS_MAX_BYTES or cog * sh * sw > INT_MAX
            or cig * kh * kw > INT_MAX or h * wd > INT_MAX):
        return "col2im"
    return "stride1" if sh == 1 and sw == 1 else "subpixel"


cdef bint all_finite(const floating* a, Py_ssize_t n) noexcept nogil:
    """No NaN or Inf in a[:n]: an integer test of the exponent bits, which the compiler vectorises."""
    cdef Py_ssize_t i
    cdef unsigned int bad32 = 0
    cdef unsigned long long bad64 = 0
    cdef const unsigned int* u32
    cdef const unsigned long long* u64
    if floating is float:
        u32 = <const unsigned int*>a
        for i in range(n):
            bad32 |= (u32[i] & 0x7f800000u) == 0x7f800000u
        return bad32 == 0
    else:
        u64 = <const unsigned long long*>a
        for i in range(n):
            bad64 |= (u64[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull
        return bad64 == 0


def _weights_finite(const floating[:, :, :, ::1] w):
    cdef bint ok
    with nogil:
        ok = all_finite(&w[0, 0, 0, 0], w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3])
    return ok


def _flipped(w, Py_ssize_t groups):
    """The conv weight (C_out, C_in/groups, KH, KW) of a stride-1 transposed conv: channels
    swapped within each group, kernel rotated by 180 degrees."""
    cin, cog, kh, kw = w.shape
    w = np.asarray(w).reshape(groups, cin // groups, cog, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w.reshape(groups * cog, cin // groups, kh, kw)[:, :, ::-1, ::-1])


def conv_transpose2d(x, w, bias, out, int sh, int sw, int ph, int pw, int dh, int dw, int groups,
                     int num_threads):
    path = _path_for(x.shape, w.shape, out.shape[2:], (sh, sw), (dh, dw), groups, x.itemsize)
    if path == "small":
        conv2d_small(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, True)
        return
    # The correlation paths multiply weights by stored zeros where a tap falls outside the input;
    # torch never forms those products, so with an Inf/NaN weight they would add NaN where torch
    # has none. Such weights take col2im, which forms only torch's products.
    if (path == "stride1" or path == "subpixel") and not _weights_finite(w):
        path = "col2im"
    kh, kw = w.shape[2], w.shape[3]
    if (path == "stride1" and ph <= dh * (kh - 1) and pw <= dw * (kw - 1)
            and x.size * w.shape[1] * kh * kw >= CONV_ROUTE_MIN_MACS):
        # an ordinary conv: conv2d's dispatcher has the faster paths for small reductions
        # (tiny calls stay here: the weight flip and conv2d's set-up would dominate them)
        conv2d(x, _flipped(w, groups), bias, out, 1, 1, dh * (kh - 1) - ph, dw * (kw - 1) - pw,
               dh, dw, groups, num_threads)
        return
    if path == "direct":
        kernel = conv_transpose2d_direct
    elif path == "col2im":
        kernel = _col2im
    else:
        kernel = conv_transpose2d_subpixel
    kernel(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, num_threads)
