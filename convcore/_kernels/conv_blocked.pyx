"""conv2d by the register-blocked micro-kernel (convcore._kernels._microkernel) reading its
source in place, for short and medium reductions (K = Cin/groups*KH*KW: a one-channel audio
stem, an RGB stem, grouped convs with few channels per group, a 3x3 conv over 64 channels).

Every (MR output channels, NR output pixels) block of the result is summed in registers over
all of K, starting from the bias, and stored once: no copy of the columns into panels, no
reduction chunks. Tap k of pixel q is read at src[koff[k] + q] from one of two per-thread
sources, both sized to stay in L2:

* "block": a work item is (image, group, tile of whole output rows). Each input channel's
  window is copied once, zero-padded and split into its stride phases (row phase rho,
  column phase sig hold x[y0 + ry*sh + rho, x0 + cx*sw + sig]), so that every tap is a
  fixed offset for all pixels of the tile. Pixels are numbered q = row*pitch + col with
  pitch = OW + (KW-1)*dw//sw: the lanes of the columns past OW are computed into a
  scratch accumulator and dropped when its rows are copied out (stored straight into
  ``out`` when there are none). It copies about sh*sw input values per output, so it is
  used when sh*sw <= KH*KW and there are enough output rows to spread over threads. Where
  the output channels fill NR-wide vectors and K >= 256 or the kernel has >= 49 taps
  ("block pixels"), pixel_gemm reads
  it instead: MR pixels broadcast per register block, NR channels of weights packed per call
  in vectors, so no lanes are spent on the columns past OW and each result is stored in
  place (a 3x3 conv over 64 channels on 56x56: 1.06x); also for reductions past BLOCK_MAX_K
  and few rows, its items splitting the output channels, where a call has enough pixels to
  pay for the packing.
* "im2col": a work item is (image, group, tile of consecutive output pixels; a block of
  output channels too when the tiles alone give too few items) and the source its (K, tile)
  im2col block; for large strides (it gathers only what is read) and for few, long rows (1-D
  signals: it tiles pixels, not rows).

Every output element is bias + w[0]*src[0] + ... + w[K-1]*src[K-1] in that order, whatever
the source, tile or thread count, so results are bitwise identical for any num_threads and
between the two sources. No product is skipped (0 * Inf and 0 * NaN stay NaN; padding is
read as stored zeros). Scratch per thread: the source, plus MR accumulator rows in "block";
"block pixels" packs the weights once per call (Cout x K).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from convcore._kernels._openmp cimport omp_get_thread_num, team_barrier
from convcore._kernels._tiling cimport WANT_ITEMS, ceil_div, row_block, team_size, tile_pixels
from convcore._kernels.conv_im2col cimport im2col, load_phases
from convcore._kernels._microkernel cimport (CCB_MR, CCB_NR_D, CCB_NR_F, CCP_PANEL_D, CCP_PANEL_F, PIXEL_MIN_K,
                                             PIXEL_W_BYTES, gather_gemm, pack_rows, pixel_gemm, pixel_lanes_full,
                                             vector_malloc)

# per-thread source (im2col block or phase-split input block): the micro-kernel streams it once
# per MR output channels, so it should stay in L2 (Zen 4: 1 MB) next to the weights it reads
cdef Py_ssize_t SRC_BYTES = 256 * 1024
cdef enum:
    BLOCK_MAX_K = 640  # longest reduction read from a phase-split block (below)
    # pixels (rows x pitch) per block item at least, even if that gives fewer than WANT_ITEMS
    # items: 2 rows of a 16x16 plane (36 pixels) ran two 32-lane register blocks half idle (3x3
    # over 64 channels at batch 1: 185 -> 123 us; 256 pixels split 16 rows 15 + 1: 202)
    BLOCK_MIN_PIXELS = 128
    # output channels per item at least, when the im2col tiles alone give too few items (batch 1):
    # each block redoes its tile's im2col block (3x3 over 256 channels on 14x14 planes: blocks of
    # 64 or 128 channels 1.56 ms, one item 1.78)
    IM2COL_MIN_ROWS = 128
    PIXEL_MIN_ROWS = 64  # output channels per item at least, when they are split
    PIXEL_MIN_PIXELS = 1024  # output pixels per call (all images and groups) at least
    PIXEL_MIN_TILE = 64  # output pixels per item at least
    # kernel taps from which pixel_gemm beats gather_gemm at any reduction: 7x7 to 11x11 kernels
    # over 1-4 channels (K 49-196), 1.03-1.16x in all 17 shapes tried (strides 1 and 2, 32-128
    # output channels, batch 1-8, both dtypes); 3x3 and 5x5 kernels below PIXEL_MIN_K lost up to
    # 1.3x or split both ways
    PIXEL_MIN_TAPS = 49
    SOURCE_AUTO = 0
    SOURCE_IM2COL = 1
    SOURCE_BLOCK = 2
    SOURCE_PIXELS = 3
SOURCES = ("auto", "im2col", "block", "block pixels")
MR = CCB_MR
NR = {"float32": CCB_NR_F, "float64": CCB_NR_D}
# reduction chunk of the panel GEMM (convcore._kernels._microkernel): KC x NR column panels
KC = {"float32": CCP_PANEL_F // CCB_NR_F, "float64": CCP_PANEL_D // CCB_NR_D}


cdef Py_ssize_t block_rows(Py_ssize_t cig, Py_ssize_t oh_n, Py_ssize_t ow_n, Py_ssize_t kh, Py_ssize_t kw,
                           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t planes,
                           Py_ssize_t itemsize, bint pixels) noexcept nogil:
    """Output rows per item of the phase-split mode, or 0 where im2col is the better source
    (pixels: for pixel_gemm, which reads long reductions in place and splits output channels
    between items)."""
    # the block copies about stride_h*stride_w input values per output and input channel, im2col
    # writes KH*KW: with strides past the kernel most of the block would never be read
    if sh * sw > kh * kw:
        return 0
    # with long reductions the block holds few output rows of many channels and most of its
    # tile is re-read per channel block from beyond L2: im2col tiles measured 1.4-1.5x faster
    # (3x3 over 128 channels stride 2, 512 channels on 7x7 or 9x9 images)
    if cig * kh * kw > BLOCK_MAX_K and not pixels:
        return 0
    # items are whole output rows: too few rows to spread over threads, im2col tiles pixels
    if oh_n * planes < WANT_ITEMS and not pixels:
        return 0
    cdef Py_ssize_t wp = ow_n + (kw - 1) * dw // sw, extra = (kh - 1) * dh // sh
    cdef Py_ssize_t row_bytes = cig * sh * sw * wp * itemsize
    # the block of even one output row (long 1-D signals, many channels) must fit the budget
    cdef Py_ssize_t rt = SRC_BYTES // row_bytes - extra
    if rt < 1:
        return 0
    cdef Py_ssize_t spread = ceil_div(oh_n, ceil_div(WANT_ITEMS, planes))
    if spread < ceil_div(BLOCK_MIN_PIXELS, wp):
        spread = ceil_div(BLOCK_MIN_PIXELS, wp)
    if rt > spread:
        rt = spread
    return rt if rt < oh_n else oh_n


cdef bint pixels_fit(Py_ssize_t cog, Py_ssize_t k, Py_ssize_t taps, Py_ssize_t nr) noexcept nogil:
    """Whether pixel_gemm reads the block better than gather_gemm: the output channels fill its
    NR-wide blocks (at most a quarter idle), and the reduction pays for its result stores or
    the kernel is large (measured: PIXEL_MIN_TAPS)."""
    return pixel_lanes_full(cog, nr) and (k >= PIXEL_MIN_K or taps >= PIXEL_MIN_TAPS)


cdef int choose_source(Py_ssize_t cig, Py_ssize_t cog, Py_ssize_t oh_n, Py_ssize_t ow_n, Py_ssize_t kh,
                       Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                       Py_ssize_t planes, Py_ssize_t itemsize, int asked, Py_ssize_t* rt) noexcept nogil:
    """The source to read (asked: SOURCE_AUTO, or one that tests ask for, where it can run), and
    in rt the phase-split block's output rows per item (0 for im2col)."""
    cdef Py_ssize_t nr = CCB_NR_F if itemsize == 4 else CCB_NR_D, k = cig * kh * kw
    rt[0] = 0
    if asked == SOURCE_IM2COL:
        return SOURCE_IM2COL
    # pixel_gemm: output channels that fill its vectors, a block of NR channels' weights (K x NR)
    # that stays in L2 while its pixel blocks read it, and enough pixels to pay for packing the
    # weights (3x3 over 256 channels: 196 pixels 0.94x, 1568 pixels 1.03x)
    if asked == SOURCE_PIXELS or (asked == SOURCE_AUTO and pixels_fit(cog, k, kh * kw, nr) and k * nr * itemsize <= PIXEL_W_BYTES
                                  and planes * oh_n * ow_n >= PIXEL_MIN_PIXELS):
        rt[0] = block_rows(cig, oh_n, ow_n, kh, kw, sh, sw, dh, dw, planes, itemsize, True)
        # each item streams its blocks of weights once: enough pixels per item to reuse them
        # (3x3 stride 2 over 128 channels in float64: 3 rows of 14 pixels 0.89x)
        if rt[0] and (asked == SOURCE_PIXELS or min(rt[0], oh_n) * ow_n >= PIXEL_MIN_TILE):
            return SOURCE_PIXELS
    rt[0] = block_rows(cig, oh_n, ow_n, kh, kw, sh, sw, dh, dw, planes, itemsize, False)
    return SOURCE_BLOCK if rt[0] else SOURCE_IM2COL


def _mode_for(x_shape, w_shape, out_shape, sh, sw, dh, dw, groups, itemsize):
    """"block" (phase-split input block read by gather_gemm), "block pixels" (read by pixel_gemm)
    or "im2col": the source the blocked path reads (tests)."""
    cdef Py_ssize_t rt
    return SOURCES[choose_source(w_shape[1], w_shape[0] // groups, out_shape[2], out_shape[3], w_shape[2],
                                 w_shape[3], sh, sw, dh, dw, x_shape[0] * groups, itemsize, SOURCE_AUTO, &rt)]


cdef int conv2d_blocked_impl(const floating* x, const floating* w, const floating* bias, bint has_bias,
                             floating* out, Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd,
                             Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n,
                             Py_ssize_t ow_n, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                             Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads,
                             int source) except -1:
    """The source read: SOURCE_IM2COL, _BLOCK or _PIXELS."""
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups
    cdef Py_ssize_t k = cig * kh * kw, ohw = oh_n * ow_n, hw = h * wd
    cdef Py_ssize_t mr_n = CCB_MR
    cdef Py_ssize_t nr_n = CCB_NR_F if floating is float else CCB_NR_D
    cdef Py_ssize_t ncb = ceil_div(cog, mr_n)
    cdef Py_ssize_t rt
    cdef bint pix = choose_source(cig, cog, oh_n, ow_n, kh, kw, sh, sw, dh, dw, n * groups, sizeof(floating),
                                  source, &rt) == SOURCE_PIXELS
    cdef Py_ssize_t mp = ceil_div(cog, nr_n) * nr_n
    cdef floating* wpk = NULL  # pix: the weights packed per block of NR channels as (K, NR), and
    cdef floating* bpad = NULL  # the bias (or 0), groups blocks of mp
    cdef Py_ssize_t* poff = NULL  # pix: per tile pixel, where the block holds it and where its output lies,
    cdef Py_ssize_t* lo = NULL    # and per channel its output plane
    cdef Py_ssize_t pt = 0, ntiles, src_len, acc_len = 0, ry_n = 0, wpitch = 0, ldc = 0
    cdef Py_ssize_t ci, i, j, q, g
    if rt:
        # item: rt output rows; pixel q = r*wpitch + c of the accumulator, c >= ow_n discarded
        wpitch = ow_n + (kw - 1) * dw // sw
        ry_n = rt + (kh - 1) * dh // sh
        ntiles = ceil_div(oh_n, rt)
        # pixel_gemm stores its results in place; gather_gemm's lanes past OW need accumulator rows
        acc_len = 0 if pix else ceil_div(rt * wpitch, nr_n) * nr_n
        # the last pixel block reads up to NR lanes and a row of taps past the block
        src_len = cig * sh * sw * ry_n * wpitch + wpitch + nr_n
    else:
        pt = tile_pixels(ohw, k, sizeof(floating), SRC_BYTES, n * groups)
        if pt < ohw:
            pt = ceil_div(pt, nr_n) * nr_n
            if pt > ohw:
                pt = ohw
        ntiles = ceil_div(ohw, pt)
        # the last pixel block reads up to NR columns: pad rows to whole blocks, and off a
        # multiple of 512 bytes so that K rows do not share a few cache sets
        ldc = ceil_div(pt, nr_n) * nr_n
        if (ldc * sizeof(floating)) % 512 == 0:
            ldc += nr_n
        src_len = k * ldc
    # output channels per item: all of them for gather_gemm's block, else blocks of them when the
    # tiles give too few items (each block redoes its tile's source)
    cdef Py_ssize_t rows = (cog if rt and not pix else
                            row_block(cog, n * groups * ntiles, PIXEL_MIN_ROWS if pix else IM2COL_MIN_ROWS,
                                      nr_n if pix else CCB_MR))
    cdef Py_ssize_t parts = ceil_div(cog, rows)
    cdef Py_ssize_t items = n * groups * ntiles * parts
    cdef int nt = team_size(num_threads, items, n * cout * ohw * k)
    cdef Py_ssize_t scratch_len = src_len + mr_n * acc_len
    # no calloc: zeroing before the threads start was 18% of a batch-1 3x3 conv over 256 channels
    cdef floating* scratch = <floating*>malloc(nt * scratch_len * sizeof(floating))
    cdef Py_ssize_t* koff = <Py_ssize_t*>malloc(k * sizeof(Py_ssize_t))
    if pix:
        wpk = <floating*>vector_malloc(groups * mp * k * sizeof(floating))
        bpad = <floating*>vector_malloc(groups * mp * sizeof(floating))
        poff = <Py_ssize_t*>malloc(2 * rt * ow_n * sizeof(Py_ssize_t))
        lo = <Py_ssize_t*>malloc(mp * sizeof(Py_ssize_t))
    if scratch == NULL or koff == NULL or (pix and (wpk == NULL or bpad == NULL or poff == NULL or lo == NULL)):
        free(scratch)
        free(koff)
        free(wpk)
        free(bpad)
        free(poff)
        free(lo)
        raise MemoryError("cannot allocate the kernel's scratch memory")
    if pix:
        # pixel q of a tile: block offset (row q // OW of pitch wpitch), output offset q;
        # channel j: output plane j; the bias as the sums' first term (0 without one)
        for q in range(rt * ow_n):
            poff[q] = q // ow_n * wpitch + q % ow_n
            poff[rt * ow_n + q] = q
        for j in range(mp):
            lo[j] = j * ohw
        for g in range(groups):
            for j in range(mp):
                bpad[g * mp + j] = bias[g * cog + j] if has_bias and j < cog else 0
    cdef Py_ssize_t kk, cb, r
    for ci in range(cig):
        for i in range(kh):
            for j in range(kw):
                kk = (ci * kh + i) * kw + j
                if rt:
                    koff[kk] = ((((ci * sh + i * dh % sh) * sw + j * dw % sw) * ry_n + i * dh // sh) * wpitch
                                + j * dw // sw)
                else:
                    koff[kk] = kk * ldc
    cdef Py_ssize_t item, ng, img, p0, p, nrow, r0, part
    cdef int tid
    cdef floating* src
    cdef floating* acc
    cdef floating* dst
    tid = 0  # thread-private inside the region; initialised so the compiler sees a value
    src = acc = NULL
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        src = scratch + tid * scratch_len
        acc = src + src_len
        if rt:
            # zeroed by its thread: lanes past the block's loaded rows are read (into discarded
            # results), never written
            memset(src, 0, scratch_len * sizeof(floating))
        if pix:
            for cb in prange(groups * (mp // nr_n), schedule="static"):
                pack_rows(w + (cb // (mp // nr_n) * cog + cb % (mp // nr_n) * nr_n) * k, k,
                          min(nr_n, cog - cb % (mp // nr_n) * nr_n), k, wpk + cb * nr_n * k, nr_n)
            team_barrier()  # every block packed before any item reads it
        for item in prange(items, schedule="dynamic"):
            part = item % parts
            ng = item // parts // ntiles
            img = ng // groups
            g = ng - img * groups
            if rt:
                p0 = (item // parts - ng * ntiles) * rt  # first output row
                nrow = oh_n - p0 if oh_n - p0 < rt else rt
                for ci in range(cig):
                    load_phases(src + ci * sh * sw * ry_n * wpitch, x + ((img * cin + g * cig + ci) * h) * wd,
                                h, wd, p0 * sh - ph, -pw, sh, sw, ry_n, nrow + (kh - 1) * dh // sh, wpitch)
                dst = out + (img * cout + g * cog) * ohw + p0 * ow_n
                if pix:
                    r0 = part * rows
                    pixel_gemm(min(rows, cog - r0), nrow * ow_n, k, wpk + (g * mp + r0) * k, src, koff, poff,
                               poff + rt * ow_n, dst + r0 * ohw, lo, bpad + g * mp + r0, True)
                elif nrow == 1 or wpitch == ow_n:
                    # no discarded columns between the rows: store straight into out
                    gather_gemm(cog, nrow * ow_n, k, w + g * cog * k, k, bias + g * cog if has_bias else NULL,
                                src, koff, dst, ohw)
                else:
                    # a block of MR channels at a time into the accumulator rows (all of their
                    # lanes: acc_len is whole blocks), then its rows without the discarded columns
                    p = ceil_div(nrow * wpitch, nr_n) * nr_n
                    for cb in range(ncb):
                        gather_gemm(cog - cb * mr_n if cog - cb * mr_n < mr_n else mr_n, p, k,
                                    w + (g * cog + cb * mr_n) * k, k,
                                    bias + g * cog + cb * mr_n if has_bias else NULL, src, koff, acc, acc_len)
                        for r in range(cog - cb * mr_n if cog - cb * mr_n < mr_n else mr_n):
                            for q in range(nrow):
                                memcpy(dst + (cb * mr_n + r) * ohw + q * ow_n, acc + r * acc_len + q * wpitch,
                                       ow_n * sizeof(floating))
            else:
                p0 = (item // parts - ng * ntiles) * pt
                p = ohw - p0 if ohw - p0 < pt else pt
                r0 = part * rows
                im2col(x + (img * cin + g * cig) * hw, cig, h, wd, kh, kw, ow_n, sh, sw, ph, pw, dh, dw,
                       p0, p0 + p, src, ldc)
                if p % nr_n:
                    # the last register block reads whole NR lanes: zeros past the tile
                    for r in range(k):
                        memset(src + r * ldc + p, 0, (nr_n - p % nr_n) * sizeof(floating))
                gather_gemm(min(rows, cog - r0), p, k, w + (g * cog + r0) * k, k,
                            bias + g * cog + r0 if has_bias else NULL, src, koff,
                            out + (img * cout + g * cog + r0) * ohw + p0, ohw)
    free(scratch)
    free(koff)
    free(wpk)
    free(bpad)
    free(poff)
    free(lo)
    if pix:
        return SOURCE_PIXELS
    return SOURCE_BLOCK if rt else SOURCE_IM2COL


def conv2d_blocked(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] bias, floating[:, :, :, ::1] out,
                   int sh, int sw, int ph, int pw, int dh, int dw, int groups, int num_threads,
                   str source="auto"):
    """Same arguments and contract as convcore._kernels.conv.conv2d. Returns the source read,
    "im2col", "block" or "block pixels" (tests); `source` (tests) asks for one, the block ones
    where the phase-split block is chosen. All give the micro-kernel the same values in the same
    order, so the results are bitwise equal."""
    cdef int asked = SOURCES.index(source)
    return SOURCES[conv2d_blocked_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
                        bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
                        x.shape[3], w.shape[0], w.shape[2], w.shape[3], out.shape[2], out.shape[3],
                        sh, sw, ph, pw, dh, dw, groups, num_threads, asked)]
