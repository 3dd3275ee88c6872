"""conv2d (contract: convcore/_kernels/__init__.py): the dispatcher and the GEMM paths.

Paths, chosen from shapes only by ``_path_for``:

* ``"small"`` (convcore._kernels.conv_small): calls of a few thousand multiply-adds, where
  every other path's set-up would dominate.
* ``"direct"`` (convcore._kernels.conv_direct): few output channels per group (depthwise,
  small channel multipliers, one to three output maps), where a GEMM's M would starve the
  micro-kernel; not for 1x1 kernels (no taps to share a loaded block), and not for kernel
  extents or strides so large that its padded input block would be mostly unread.
* ``"dot"`` (convcore._kernels.conv_dot): float32, few output pixels per group and a reduction
  past BLOCKED_MAX_K (batch-1 layers deep in a network): a dot-product micro-kernel, where the
  im2col path would chunk the reduction and leave most of its pixel lanes idle.
* ``"gemm"``: 1x1, stride 1, no padding: the input plane already is the column matrix.
* ``"blocked"`` (convcore._kernels.conv_blocked): reductions K = Cin/groups*KH*KW up to
  BLOCKED_MAX_K: the micro-kernel reads a phase-split input block or an im2col tile in place
  and sums each output over all of K in registers, bias included.
* ``"im2col"``: everything else (1x1 with stride or padding included: im2col is then a gather).

A GEMM work item is (group, tile of consecutive output pixels of the batch, whole register
blocks wide; a block of output channels too when the tiles alone give too few items). Its
im2col block (Cin/groups*KH*KW, tile) lands in the calling thread's column buffer and the
micro-kernel GEMM (convcore._kernels._microkernel: weights read in place, K in chunks of KC,
columns copied into L1-sized panels) writes the (Cout/groups, tile) result, bias included,
straight into ``out``; the "gemm" path skips im2col. A tile that crosses images (small planes
share one GEMM) gathers its columns per image and copies its result out per image.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from convcore._kernels._openmp cimport omp_get_thread_num
from convcore._kernels._tiling cimport MIN_ROWS, ceil_div, row_block, team_size, tile_pixels
from convcore._kernels.conv_im2col cimport im2col
from convcore._kernels._microkernel cimport CCB_MR, nr_of, panel_gemm, panel_len

from convcore._kernels.conv_blocked import conv2d_blocked
from convcore._kernels.conv_direct import conv2d_direct
from convcore._kernels.conv_dot import conv2d_dot, dot_fits
from convcore._kernels.conv_small import conv2d_small, small_enough

cdef enum:
    # measured (single thread, 3x3..7x7): up to 3 output channels per group the direct loops beat
    # im2col + GEMM for any input channel count, at 4 they tie; with stride > 1 the direct block
    # copy costs stride**2 times the output, so there only up to 2; 1x1 strided: GEMM 2.5x faster
    DIRECT_MAX_COG = 3
    DIRECT_MAX_COG_STRIDED = 2
    DIRECT_MAX_EXTENT = 256  # kernel extent (KH-1)*dh+1, (KW-1)*dw+1: bounds its block
    DIRECT_MAX_STRIDE = 64   # its block rows hold stride elements per output column
    # measured (Zen 4, 2 threads): reading the im2col tile in place with no reduction chunks, the
    # micro-kernel matches or beats the chunked GEMM up to K = 4096 (3x3 over 128..256 channels:
    # 5-30% faster, 1-D K = 4096: 5%); at K = 4608 over 7x7 images its (K, tile) source no
    # longer stays in L2 and the chunked GEMM is 10-20% faster
    BLOCKED_MAX_K = 4096
    # output channels per item at least, when the tiles alone give too few items (batch 1): each
    # block redoes its tile's im2col block (3x3 over 512 channels on 7x7 planes: blocks of 64
    # channels 2.9 ms, 128 2.4, 256 2.1, one item 4.3)
    IM2COL_MIN_ROWS = 256

# column buffer per thread: about one L2 (Zen 4: 1 MB); 512 KB measured ~8% slower in
# float64 on a ResNet 3x3 layer, equal in float32
cdef Py_ssize_t _tile_bytes = 1024 * 1024


def set_tile_bytes(Py_ssize_t nbytes):
    """Column-buffer budget per thread (for tests of tiling invariance); returns the old one."""
    global _tile_bytes
    old = _tile_bytes
    _tile_bytes = max(nbytes, 1)
    return old


cdef int conv2d_impl(const floating* x, const floating* w, const floating* bias, bint has_bias,
                     floating* out, Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd,
                     Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n, Py_ssize_t ow_n,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                     Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads,
                     bint direct) except -1:
    """The "gemm" path when `direct`, else "im2col"."""
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups
    cdef Py_ssize_t k = cig * kh * kw, ohw = oh_n * ow_n
    # the tile's (K, tile) column block stays in L2; with no column buffer, its (C_out/groups, tile)
    # result, re-read per reduction chunk, gets an eighth of that (1x1 over 256 channels measured
    # 5-8% faster than with the whole budget)
    cdef Py_ssize_t budget = _tile_bytes // 8 if direct else _tile_bytes
    cdef Py_ssize_t nr = nr_of(<floating>0), items, col_len, spill = 0, per_img
    cdef Py_ssize_t tile = tile_pixels(ohw, cog if direct else k, sizeof(floating), budget, n * groups)
    cdef Py_ssize_t ntiles = n * ceil_div(ohw, tile)
    cdef bint flat = n > 1 and tile == ohw, spans = False
    if flat:
        # planes smaller than a tile: tiles run over the batch's pixels, whole register blocks
        # wide, so that small images share a GEMM (7x7 planes of 49 pixels left a 17-pixel tail
        # block per image: 23% idle lanes). A tile that crosses images takes the im2col source
        # and a result buffer (spill); both are sized from the larger of K and C_out/groups rows,
        # so that they stay bounded per thread.
        tile = tile_pixels(n * ohw, max(cog, k), sizeof(floating), budget, groups)
        if tile > nr:
            tile = tile // nr * nr
        ntiles = ceil_div(n * ohw, tile)
        spans = ohw % tile != 0
        if spans:
            spill = cog * tile
    per_img = 0 if flat else ntiles // n
    # output channels per item: all, or blocks of whole register blocks (batch 1)
    cdef Py_ssize_t prows = row_block(cog, groups * ntiles, MIN_ROWS if direct else IM2COL_MIN_ROWS, CCB_MR)
    items = groups * ntiles * ceil_div(cog, prows)
    cdef int nt = team_size(num_threads, items, n * cout * ohw * k)
    # per thread: the column block, the spill buffer, then the micro-kernel's column panel
    col_len = (k * tile if not direct or spans else 0) + spill + panel_len(<floating>0)
    cdef floating* cols = <floating*>malloc(nt * col_len * sizeof(floating))
    if cols == NULL:
        raise MemoryError("cannot allocate the kernel's scratch memory")
    conv2d_items(x, w, bias if has_bias else NULL, out, cols, col_len, spill, direct, items, ntiles, per_img, tile,
                 prows, n, cin, h, wd, cout, kh, kw, oh_n, ow_n, sh, sw, ph, pw, dh, dw, groups, nt)
    free(cols)
    return 0


cdef void conv2d_items(const floating* x, const floating* w, const floating* bias, floating* out,
                       floating* cols, Py_ssize_t col_len, Py_ssize_t spill, bint direct, Py_ssize_t items,
                       Py_ssize_t ntiles, Py_ssize_t per_img, Py_ssize_t tile, Py_ssize_t prows,
                       Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t cout,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n, Py_ssize_t ow_n,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int nt) noexcept:
    """w read in place; bias NULL or C_out long. A group has ntiles tiles: per_img per image, or
    (per_img 0) tiles over the batch's pixels; an item is one tile's block of prows output
    channels (a multiple of MR, or all of them)."""
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups
    cdef Py_ssize_t k = cig * kh * kw, ohw = oh_n * ow_n, hw = h * wd
    cdef Py_ssize_t item, img, g, t, p0, p, co, ldb, f0, f1, a, e, j, r0, rn
    cdef Py_ssize_t parts = ceil_div(cog, prows)
    cdef int tid
    cdef floating* col
    cdef floating* res
    cdef floating* dst
    cdef floating* panel
    cdef const floating* src
    cdef const floating* wg = NULL
    cdef const floating* bg = NULL
    tid = 0  # thread-private inside the region; initialised so the compiler sees a value
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        for item in prange(items, schedule="dynamic"):
            g = item // (ntiles * parts)
            t = item - g * ntiles * parts
            r0 = (t % parts) * prows
            rn = min(prows, cog - r0)
            t = t // parts
            col = cols + tid * col_len
            panel = col + col_len - panel_len(<floating>0)  # the end of the thread's scratch
            wg = w + (g * cog + r0) * k
            bg = bias + g * cog + r0 if bias != NULL else NULL
            if per_img:
                img = t // per_img
                p0 = (t - img * per_img) * tile
            else:
                f0 = t * tile
                f1 = min(f0 + tile, n * ohw)
                img = f0 // ohw
                p0 = f0 - img * ohw
                if (f1 - 1) // ohw != img:
                    # the tile crosses images: columns per image, one GEMM, results copied out
                    j = 0
                    while f0 + j < f1:
                        a = (f0 + j) % ohw
                        e = min(ohw, a + f1 - f0 - j)
                        im2col(x + ((f0 + j) // ohw * cin + g * cig) * hw, cig, h, wd, kh, kw, ow_n,
                               sh, sw, ph, pw, dh, dw, a, e, col + j, f1 - f0)
                        j = j + e - a
                    res = col + k * tile
                    panel_gemm(rn, f1 - f0, k, wg, k, bg, col, f1 - f0, res, f1 - f0, panel)
                    j = 0
                    while f0 + j < f1:
                        a = (f0 + j) % ohw
                        e = min(ohw, a + f1 - f0 - j)
                        dst = out + ((f0 + j) // ohw * cout + g * cog + r0) * ohw
                        for co in range(rn):
                            memcpy(dst + co * ohw + a, res + co * (f1 - f0) + j, (e - a) * sizeof(floating))
                        j = j + e - a
                    continue
            p = min(tile, ohw - p0)
            dst = out + (img * cout + g * cog + r0) * ohw + p0
            src = x + (img * cin + g * cig) * hw
            if direct:
                src = src + p0
                ldb = hw
            else:
                im2col(src, cig, h, wd, kh, kw, ow_n, sh, sw, ph, pw, dh, dw, p0, p0 + p, col, p)
                src = col
                ldb = p
            panel_gemm(rn, p, k, wg, k, bg, src, ldb, dst, ohw, panel)


cdef enum Path:
    PATH_SMALL, PATH_DOT, PATH_DIRECT, PATH_GEMM, PATH_IM2COL, PATH_BLOCKED

PATH_NAMES = ("small", "dot", "direct", "gemm", "im2col", "blocked")


cdef Path choose_path(const Py_ssize_t* x_shape, const Py_ssize_t* w_shape, const Py_ssize_t* out_shape,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                      Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, Py_ssize_t itemsize):
    cdef Py_ssize_t n = x_shape[0], h = x_shape[2], wd = x_shape[3], cout = w_shape[0], cig = w_shape[1]
    cdef Py_ssize_t kh = w_shape[2], kw = w_shape[3], oh_n = out_shape[2], ow_n = out_shape[3]
    if small_enough(n, groups, cig, cout // groups, kh * kw, oh_n * ow_n, oh_n * ow_n, itemsize):
        return PATH_SMALL
    if (kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
            and oh_n == h and ow_n == wd):
        return PATH_GEMM
    if (cig * kh * kw > BLOCKED_MAX_K
            and dot_fits(n, groups, cig, cout // groups, kh * kw, oh_n * ow_n, itemsize)):
        return PATH_DOT
    cdef Py_ssize_t max_cog = DIRECT_MAX_COG if sh == 1 and sw == 1 else DIRECT_MAX_COG_STRIDED
    if (kh * kw > 1 and cout // groups <= max_cog
            and (kh - 1) * dh < DIRECT_MAX_EXTENT and (kw - 1) * dw < DIRECT_MAX_EXTENT
            and sh <= DIRECT_MAX_STRIDE and sw <= DIRECT_MAX_STRIDE):
        return PATH_DIRECT
    if cig * kh * kw <= BLOCKED_MAX_K:
        return PATH_BLOCKED
    return PATH_IM2COL


def _path_for(x_shape, w_shape, out_shape, sh, sw, ph, pw, dh, dw, groups, itemsize):
    """Name of the path conv2d takes for these shapes and arguments (for tests and benchmarks)."""
    cdef Py_ssize_t xs[4]
    cdef Py_ssize_t ws[4]
    cdef Py_ssize_t os[4]
    for i in range(4):
        xs[i], ws[i], os[i] = x_shape[i], w_shape[i], out_shape[i]
    return PATH_NAMES[choose_path(xs, ws, os, sh, sw, ph, pw, dh, dw, groups, itemsize)]


def conv2d(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
           const floating[::1] bias, floating[:, :, :, ::1] out,
           int sh, int sw, int ph, int pw, int dh, int dw, int groups, int num_threads):
    cdef Path path = choose_path(x.shape, w.shape, out.shape, sh, sw, ph, pw, dh, dw, groups, sizeof(floating))
    if path == PATH_SMALL:
        conv2d_small(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, False)
        return
    if path == PATH_DOT:
        conv2d_dot(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, num_threads)
        return
    if path == PATH_DIRECT:
        conv2d_direct(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, num_threads)
        return
    if path == PATH_BLOCKED:
        conv2d_blocked(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, num_threads)
        return
    conv2d_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
                bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
                x.shape[3], w.shape[0], w.shape[2], w.shape[3], out.shape[2], out.shape[3],
                sh, sw, ph, pw, dh, dw, groups, num_threads, path == PATH_GEMM)
