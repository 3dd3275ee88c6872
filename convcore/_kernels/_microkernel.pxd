# The register-blocked micro-kernels and the panel GEMM built on them, shared by the conv2d
# paths (conv, conv_blocked) and the sub-pixel transposed path.
#
# A micro-kernel call sums a block of MR rows x NR columns of the result in registers over a run
# of the reduction, starting from a per-row init (bias or 0) or from the stored block, and stores
# it once. Weights ("A") are read either packed per block of MR rows as (K, MR), rows past the
# end zero, so that a block's weights are one stream (the sub-pixel kernel reorders its weights
# into phase matrices anyway, and its deep GEMMs ran 3-5% slower on the other layout), or in
# place as the rows of a row-major matrix (conv2d's weight tensor: a packed copy per call was
# 12-18% of batch-1 and small-plane layers). A transposed block (pixel_gemm) swaps the roles:
# MR pixels broadcast from the source, NR output channels of packed weights in vectors, for
# narrow rows or long reductions with many output channels. Every result element is
# init + a[0]*b[0] + ... + a[K-1]*b[K-1] in that order, whatever the blocking, tile or thread, so
# the results are bitwise identical for any num_threads.
from cython cimport floating

cdef extern from *:
    """
    /* GCC/Clang vector extensions: the vector width follows the target (-march), and the
       accumulator block fits its register file (32 zmm with AVX-512, 16 ymm/xmm otherwise). */
    #include <stddef.h>
    #include <string.h>
    #if defined(__AVX512F__)
    #define CCB_VBYTES 64
    #define CCB_MR 8
    #define CCP_WIDE 1   /* 4-vector blocks of <= 4 rows: 16 accumulators + 4 sources fit 32 zmm */
    #elif defined(__AVX__)
    #define CCB_VBYTES 32
    #define CCB_MR 6
    #define CCP_WIDE 0   /* 16 registers: they would spill */
    #else
    #define CCB_VBYTES 16
    #define CCB_MR 6
    #define CCP_WIDE 0
    #endif
    /* vectors per row of the block (NR = 2 vectors); 3 (24 zmm accumulators) measured slower */
    #define CCB_NV 2
    /* bytes of one packed column panel (KC x NR): it stays in L1 while every row block reads it */
    #define CCP_PANEL_BYTES 16384
    /* up to this many rows of A a column panel is read in place: a copy would be read once */
    #define CCP_UNPACKED_ROWS CCB_MR

    /* The block: NV (1, 2 or 4) accumulator vectors per row (NV*VL columns) for RB rows; init from
       bp[r] (bp NULL: 0), or from out when acc; then K steps a[r] += src(k) * wp[k*MR + r];
       then stored, partially when mr < RB or nr < NR. Every lane sees the same operations
       whatever RB, so the variants below give bitwise equal results. SRC(k) is the address of
       column k's NR values: koff[k] + src (gathered sources) or src + k*lds (matrix rows). */
    #define CCB_BLOCK(T, SUF, RB, NVEC, SRC, WMODE)                                           \\
        enum { VL = CCB_VBYTES / sizeof(T), NV = NVEC };                                      \\
        typedef ccb_v_##SUF V;                                                                \\
        CCB_WINIT_##WMODE(T, RB)                                                              \\
        /* named accumulator arrays per vector, not a[RB][NV]: GCC then keeps them in place   \\
           across iterations (the 2-D array cost register moves in the loop, 2-4%) */         \\
        V a0[RB], a1[RB], a2[RB], a3[RB];                                                     \\
        T tmp[RB][NV * VL];                                                                   \\
        int full = mr == RB && nr == NV * VL;                                                 \\
        if (!full) {                                                                          \\
            memset(tmp, 0, sizeof(tmp));                                                      \\
            for (int r = 0; acc && r < mr; r++)                                               \\
                memcpy(tmp[r], out + r * ldo, nr * sizeof(T));                                \\
        }                                                                                     \\
        _Pragma("GCC unroll 16") for (int r = 0; r < RB; r++) {                               \\
            T* o = full ? out + r * ldo : tmp[r];                                             \\
            if (acc) {                                                                        \\
                a0[r] = *(V*)o;                                                               \\
                a1[r] = NV > 1 ? *(V*)(o + VL) : a0[r];                                       \\
                a2[r] = NV > 2 ? *(V*)(o + 2 * VL) : a0[r];                                   \\
                a3[r] = NV > 2 ? *(V*)(o + 3 * VL) : a0[r];                                   \\
            } else {                                                                          \\
                a0[r] = (V){0} + (bp ? bp[r < mr ? r : mr - 1] : (T)0);                       \\
                a1[r] = a2[r] = a3[r] = a0[r];                                                \\
            }                                                                                 \\
        }                                                                                     \\
        for (ptrdiff_t k = 0; k < k_n; k++) {                                                 \\
            const T* s = SRC(k);                                                              \\
            V c0 = *(const V*)s;                                                              \\
            V c1 = NV > 1 ? *(const V*)(s + VL) : c0;                                         \\
            V c2 = NV > 2 ? *(const V*)(s + 2 * VL) : c0;                                     \\
            V c3 = NV > 2 ? *(const V*)(s + 3 * VL) : c0;                                     \\
            _Pragma("GCC unroll 16") for (int r = 0; r < RB; r++) {                           \\
                T wv = CCB_W_##WMODE(r, k);                                                   \\
                a0[r] += c0 * wv;                                                             \\
                if (NV > 1)                                                                   \\
                    a1[r] += c1 * wv;                                                         \\
                if (NV > 2) {                                                                 \\
                    a2[r] += c2 * wv;                                                         \\
                    a3[r] += c3 * wv;                                                         \\
                }                                                                             \\
            }                                                                                 \\
        }                                                                                     \\
        _Pragma("GCC unroll 16") for (int r = 0; r < RB; r++) {                               \\
            T* o = full ? out + r * ldo : tmp[r];                                             \\
            *(V*)o = a0[r];                                                                   \\
            if (NV > 1)                                                                       \\
                *(V*)(o + VL) = a1[r];                                                        \\
            if (NV > 2) {                                                                     \\
                *(V*)(o + 2 * VL) = a2[r];                                                    \\
                *(V*)(o + 3 * VL) = a3[r];                                                    \\
            }                                                                                 \\
        }                                                                                     \\
        if (!full)                                                                            \\
            for (int r = 0; r < mr; r++)                                                      \\
                memcpy(out + r * ldo, tmp[r], nr * sizeof(T));
    /* weights: packed, wp[k*MR + r] (rows past the end zero), or rows of a row-major matrix
       read in place, wp[r*ldw + k]; rows past mr read row mr - 1 (their results are dropped) */
    #define CCB_WINIT_P(T, RB)
    #define CCB_W_P(r, k) wp[(k) * CCB_MR + (r)]
    #define CCB_WINIT_R(T, RB)                                                                \\
        const T* wr[RB];                                                                      \\
        for (int r = 0; r < RB; r++)                                                          \\
            wr[r] = wp + (r < mr ? r : mr - 1) * ldw;
    #define CCB_W_R(r, k) wr[r][k]
    #define CCB_SRC_GATHER(k) (src + koff[k])
    #define CCB_SRC_ROWS(k) (src + (k) * lds)
    /* per row-block height RB: full width (CCB_NV vectors) and half width (one vector, for   \\
       the last columns of a row: nr <= VL), over gathered (ccb) or matrix-row (ccp) sources */\\
    #define CCB_ROWS(T, SUF, RB, NAME, NVEC, WMODE)                                           \\
    static inline void ccb_rows##RB##NAME##WMODE##_##SUF(ptrdiff_t k_n, const T* wp, ptrdiff_t ldw,\\
                                                  const T* bp, const T* src, const ptrdiff_t* koff,\\
                                                  T* out, ptrdiff_t ldo, int mr, int nr) {    \\
        const int acc = 0;                                                                    \\
        CCB_BLOCK(T, SUF, RB, NVEC, CCB_SRC_GATHER, WMODE)                                    \\
    }                                                                                         \\
    static inline void ccp_rows##RB##NAME##WMODE##_##SUF(ptrdiff_t k_n, const T* wp, ptrdiff_t ldw,\\
                                                  const T* bp, int acc, const T* src,         \\
                                                  ptrdiff_t lds, T* out, ptrdiff_t ldo, int mr, int nr) {\\
        CCB_BLOCK(T, SUF, RB, NVEC, CCB_SRC_ROWS, WMODE)                                      \\
    }
    #define CCB_HEIGHT(T, SUF, RB)                                                            \\
        CCB_ROWS(T, SUF, RB, , CCB_NV, P) CCB_ROWS(T, SUF, RB, h, 1, P) CCB_ROWS(T, SUF, RB, w, 4, P) \\
        CCB_ROWS(T, SUF, RB, , CCB_NV, R) CCB_ROWS(T, SUF, RB, h, 1, R) CCB_ROWS(T, SUF, RB, w, 4, R)
    /* a last block of few rows (33 = 4*8 + 1) runs the smallest variant that covers it
       (a 3-row block, as RGB output has, its own) */
    #define CCB_PICK(mr, CALL)                                                                \\
        if (mr > 4) { CALL(CCB_MR) } else { CCB_PICK4(mr, CALL) }
    #define CCB_PICK4(mr, CALL)                                                               \\
        if (mr == 4) { CALL(4) } else if (mr == 3) { CALL(3) } else if (mr == 2) { CALL(2) } else { CALL(1) }
    #define CCB_TILE(T, SUF)                                                                  \\
    typedef T ccb_v_##SUF __attribute__((vector_size(CCB_VBYTES), aligned(sizeof(T)), may_alias)); \\
    CCB_HEIGHT(T, SUF, 8) CCB_HEIGHT(T, SUF, 6) CCB_HEIGHT(T, SUF, 4) CCB_HEIGHT(T, SUF, 3)    \\
    CCB_HEIGHT(T, SUF, 2)                                                                     \\
    CCB_HEIGHT(T, SUF, 1)                                                                     \\
    /* out[r*ldo + q] = bp[r] + sum_k W(r, k) * src[koff[k] + q], r < mr, q < nr, with W(r, k) \\
       = wp[k*MR + r] (packed: ldw = 0) or wp[r*ldw + k]; the block is computed for all NR   \\
       lanes, so src + koff[k] must hold NR readable elements */                             \\
    static inline void ccb_tile_##SUF(ptrdiff_t k_n, const T* wp, ptrdiff_t ldw, const T* bp, \\
                                      const T* src, const ptrdiff_t* koff, T* out, ptrdiff_t ldo,\\
                                      int mr, int nr) {                                       \\
        if (ldw) { CCB_PICK(mr, CCB_CALL_GATHER_R_##SUF) }                                    \\
        else { CCB_PICK(mr, CCB_CALL_GATHER_P_##SUF) }                                        \\
    }                                                                                         \\
    /* C[i*ldc + j] = bias[i] (0 if NULL) + sum_k A[i, k] * B[k*ldb + j], i < m, j < n: A     \\
       packed as above (ldw = 0) or row-major (A[i, k] = wp[i*ldw + k]), B copied per column \\
       panel of KC x NR                                                                       \\
       into `panel` (zero past n) unless a single row block reads it in place. Reduction     \\
       chunks of KC run outermost: the chunk's packed weights stay in L2 for all column       \\
       panels, and C is re-read once per chunk. */                                            \\
    static void ccp_gemm_##SUF(ptrdiff_t m, ptrdiff_t n, ptrdiff_t K, const T* wp, ptrdiff_t ldw, \\
                               const T* bias,                                                 \\
                               const T* B, ptrdiff_t ldb, T* C, ptrdiff_t ldc, T* panel) {    \\
        enum { VL = CCB_VBYTES / sizeof(T), NR = CCB_NV * VL, KC = CCP_PANEL_BYTES / (NR * sizeof(T)) }; \\
        if (K == 0) {                                                                         \\
            for (ptrdiff_t i = 0; i < m; i++)                                                 \\
                for (ptrdiff_t j = 0; j < n; j++)                                             \\
                    C[i * ldc + j] = bias ? bias[i] : (T)0;                                   \\
            return;                                                                           \\
        }                                                                                     \\
        for (ptrdiff_t k0 = 0; k0 < K; k0 += KC) {                                            \\
            ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;                                         \\
            ptrdiff_t step;                                                                   \\
            for (ptrdiff_t j0 = 0; j0 < n; j0 += step) {                                      \\
                /* at most 4 rows: 4 vectors per row (the FMAs of 2 would wait on loads) */   \\
                int wide = CCP_WIDE && m <= 4 && n - j0 >= 2 * NR;                            \\
                int nr = wide ? 2 * NR : n - j0 < NR ? (int)(n - j0) : NR;                    \\
                const T* bs = B + k0 * ldb + j0;                                              \\
                ptrdiff_t lds = ldb;                                                          \\
                step = nr;                                                                    \\
                if (!wide && (m > CCP_UNPACKED_ROWS || nr < NR)) {                            \\
                    if (nr == NR)   /* inline vector copies: a memcpy call per row cost ~6% */\\
                        for (ptrdiff_t k = 0; k < kc; k++)                                    \\
                            for (int v = 0; v < CCB_NV; v++)                                  \\
                                *(ccb_v_##SUF*)(panel + k * NR + v * VL) = *(const ccb_v_##SUF*)(bs + k * ldb + v * VL);\\
                    else                                                                      \\
                        for (ptrdiff_t k = 0; k < kc; k++) {                                  \\
                            memcpy(panel + k * NR, bs + k * ldb, nr * sizeof(T));             \\
                            memset(panel + k * NR + nr, 0, (NR - nr) * sizeof(T));            \\
                        }                                                                     \\
                    bs = panel;                                                               \\
                    lds = NR;                                                                 \\
                    /* the next panel's rows (long strides the hardware prefetcher misses)    \\
                       load while this one is multiplied */                                   \\
                    if (j0 + nr < n)                                                          \\
                        for (ptrdiff_t k = 0; k < kc; k++)                                    \\
                            for (int v = 0; v < NR * (int)sizeof(T); v += 64)                 \\
                                __builtin_prefetch((const char*)(B + (k0 + k) * ldb + j0 + nr) + v); \\
                }                                                                             \\
                for (ptrdiff_t i0 = 0; i0 < m; i0 += CCB_MR) {                                \\
                    int mr = m - i0 < CCB_MR ? (int)(m - i0) : CCB_MR;                        \\
                    const T* wk = ldw ? wp + i0 * ldw + k0 : wp + i0 * K + k0 * CCB_MR;       \\
                    const T* bk = bias ? bias + i0 : NULL;                                    \\
                    T* ck = C + i0 * ldc + j0;                                                \\
                    int acc = k0 > 0;                                                         \\
                    if (wide && ldw) {                                                        \\
                        CCB_PICK4(mr, CCPW_CALL_R_##SUF)                                      \\
                    } else if (wide) {                                                        \\
                        CCB_PICK4(mr, CCPW_CALL_P_##SUF)                                      \\
                    } else if (ldw) {                                                         \\
                        CCB_PICK(mr, CCP_CALL_R_##SUF)                                        \\
                    } else {                                                                  \\
                        CCB_PICK(mr, CCP_CALL_P_##SUF)                                        \\
                    }                                                                         \\
                }                                                                             \\
            }                                                                                 \\
        }                                                                                     \\
    }
    /* The transposed block, for GEMMs whose rows (output channels) fill vectors and whose
       pixels are few per row: MR pixels, broadcast from src + qoff[r] + koff[k] (the source read
       in place, no column gather and no lanes on padding columns), times NV vectors of output
       channels packed per k (wp[k*NR + j], NR channels, zero past the end); each result stored
       where it belongs, out[lo[j] + oo[r]] for r < mr, j < nr (lane and pixel offsets: a
       strided output takes no separate pass). The result is lb[j] + x[0]*w[0] + ... in k order
       when init (lb then holds NR readable lanes), else 0 + x[0]*w[0] + ... + lb[j]: as in
       CCB_BLOCK, so both blocks give equal bits for the same values. */
    #define CCX_ROWS(T, SUF, NAME, NVEC)                                                      \\
    static inline void ccx_rows##NAME##_##SUF(ptrdiff_t k_n, const T* wp, const T* src,       \\
                                              const ptrdiff_t* koff, const ptrdiff_t* qoff,   \\
                                              const ptrdiff_t* oo, T* out, const ptrdiff_t* lo, \\
                                              const T* lb, int init, int mr, int nr) {        \\
        enum { VL = CCB_VBYTES / sizeof(T), NV = NVEC, NR = CCB_NV * VL };                    \\
        typedef ccb_v_##SUF V;                                                                \\
        const T* p[CCB_MR];                                                                   \\
        V a0[CCB_MR], a1[CCB_MR];                                                             \\
        T tmp[CCB_MR][NV * VL];                                                               \\
        V b0 = init ? *(const V*)lb : (V){0};                                                 \\
        V b1 = init && NV > 1 ? *(const V*)(lb + VL) : (V){0};                                \\
        _Pragma("GCC unroll 16") for (int r = 0; r < CCB_MR; r++) {                           \\
            p[r] = src + qoff[r < mr ? r : mr - 1];  /* rows past mr: results dropped */     \\
            a0[r] = b0;                                                                       \\
            a1[r] = b1;                                                                       \\
        }                                                                                     \\
        for (ptrdiff_t k = 0; k < k_n; k++) {                                                 \\
            V c0 = *(const V*)(wp + k * NR);                                                  \\
            V c1 = NV > 1 ? *(const V*)(wp + k * NR + VL) : c0;                               \\
            ptrdiff_t o = koff[k];                                                            \\
            _Pragma("GCC unroll 16") for (int r = 0; r < CCB_MR; r++) {                       \\
                T xv = p[r][o];                                                               \\
                a0[r] += c0 * xv;                                                             \\
                if (NV > 1)                                                                   \\
                    a1[r] += c1 * xv;                                                         \\
            }                                                                                 \\
        }                                                                                     \\
        _Pragma("GCC unroll 16") for (int r = 0; r < CCB_MR; r++) {                           \\
            *(V*)tmp[r] = a0[r];                                                              \\
            if (NV > 1)                                                                       \\
                *(V*)(tmp[r] + VL) = a1[r];                                                   \\
        }                                                                                     \\
        int run = mr == CCB_MR;  /* the block's pixels consecutive in the output */           \\
        for (int r = 1; run && r < CCB_MR; r++)                                               \\
            run = oo[r] == oo[0] + r;                                                         \\
        if (run && ccx_store_run_##SUF(tmp[0], NV * VL, out + oo[0], lo, lb, init, nr))       \\
            return;                                                                           \\
        /* rows past mr computed row mr - 1's pixel: storing them there again writes the same \\
           values, and the stores run unrolled */                                             \\
        ptrdiff_t oq[CCB_MR];                                                                 \\
        for (int r = 0; r < CCB_MR; r++)                                                      \\
            oq[r] = oo[r < mr ? r : mr - 1];                                                  \\
        for (int j = 0; j < nr; j++) {                                                        \\
            T* o = out + lo[j];                                                               \\
            if (init) {                                                                       \\
                _Pragma("GCC unroll 16") for (int r = 0; r < CCB_MR; r++)                     \\
                    o[oq[r]] = tmp[r][j];                                                     \\
            } else {                                                                          \\
                _Pragma("GCC unroll 16") for (int r = 0; r < CCB_MR; r++)                     \\
                    o[oq[r]] = tmp[r][j] + lb[j];                                             \\
            }                                                                                 \\
        }                                                                                     \\
    }
    /* out[lo[j] + oo[q]] = lb[j] + sum_k A[j, k] * src[qoff[q] + koff[k]], j < m, q < p (lb
       first when init): A packed per block of NR rows as (K, NR). Row blocks outer: a block's
       K x NR weights stay in L2 while every pixel block reads them. */
    #define CCX_GEMM(T, SUF)                                                                  \\
    static void ccx_gemm_##SUF(ptrdiff_t m, ptrdiff_t p, ptrdiff_t K, const T* wp, const T* src, \\
                               const ptrdiff_t* koff, const ptrdiff_t* qoff, const ptrdiff_t* oo, \\
                               T* out, const ptrdiff_t* lo, const T* lb, int init) {          \\
        enum { VL = CCB_VBYTES / sizeof(T), NR = CCB_NV * VL };                               \\
        for (ptrdiff_t j0 = 0; j0 < m; j0 += NR) {                                            \\
            int nr = m - j0 < NR ? (int)(m - j0) : NR;                                        \\
            for (ptrdiff_t q0 = 0; q0 < p; q0 += CCB_MR) {                                    \\
                int mr = p - q0 < CCB_MR ? (int)(p - q0) : CCB_MR;                            \\
                if (nr <= VL)                                                                 \\
                    ccx_rowsh_##SUF(K, wp + j0 * K, src, koff, qoff + q0, oo + q0, out, lo + j0,  \\
                                    lb + j0, init, mr, nr);                                   \\
                else                                                                          \\
                    ccx_rows_##SUF(K, wp + j0 * K, src, koff, qoff + q0, oo + q0, out, lo + j0,   \\
                                   lb + j0, init, mr, nr);                                    \\
            }                                                                                 \\
        }                                                                                     \\
    }
    #define CCX_DEF(T, SUF) CCX_ROWS(T, SUF, , CCB_NV) CCX_ROWS(T, SUF, h, 1) CCX_GEMM(T, SUF)
    /* two levels, so that CCB_MR is expanded before it is pasted into a name */
    #define CCB_CALL_GATHER_P_f(RB) CCB_CALL_GATHER_(RB, P, f)
    #define CCB_CALL_GATHER_P_d(RB) CCB_CALL_GATHER_(RB, P, d)
    #define CCB_CALL_GATHER_R_f(RB) CCB_CALL_GATHER_(RB, R, f)
    #define CCB_CALL_GATHER_R_d(RB) CCB_CALL_GATHER_(RB, R, d)
    #define CCB_CALL_GATHER_(RB, WM, SUF)                                                     \\
        if (nr <= CCB_VL_##SUF) ccb_rows##RB##h##WM##_##SUF(k_n, wp, ldw, bp, src, koff, out, ldo, mr, nr); \\
        else ccb_rows##RB##WM##_##SUF(k_n, wp, ldw, bp, src, koff, out, ldo, mr, nr);
    #define CCP_CALL_P_f(RB) CCP_CALL_(RB, P, f)
    #define CCP_CALL_P_d(RB) CCP_CALL_(RB, P, d)
    #define CCP_CALL_R_f(RB) CCP_CALL_(RB, R, f)
    #define CCP_CALL_R_d(RB) CCP_CALL_(RB, R, d)
    #define CCP_CALL_(RB, WM, SUF)                                                            \\
        if (nr <= CCB_VL_##SUF) ccp_rows##RB##h##WM##_##SUF(kc, wk, ldw, bk, acc, bs, lds, ck, ldc, mr, nr); \\
        else ccp_rows##RB##WM##_##SUF(kc, wk, ldw, bk, acc, bs, lds, ck, ldc, mr, nr);
    #define CCPW_CALL_P_f(RB) CCPW_CALL_(RB, P, f)
    #define CCPW_CALL_P_d(RB) CCPW_CALL_(RB, P, d)
    #define CCPW_CALL_R_f(RB) CCPW_CALL_(RB, R, f)
    #define CCPW_CALL_R_d(RB) CCPW_CALL_(RB, R, d)
    #define CCPW_CALL_(RB, WM, SUF) ccp_rows##RB##w##WM##_##SUF(kc, wk, ldw, bk, acc, bs, lds, ck, ldc, mr, nr);
    #define CCB_VL_f (CCB_VBYTES / 4)
    #define CCB_VL_d (CCB_VBYTES / 8)
    CCB_TILE(float, f)
    CCB_TILE(double, d)
    /* An 8 x 16 float block transposed by three rounds of two-source shuffles (24 vpermt2ps):
       dst[kk*8 + r] = a[r*lda + kk], kk < 16. Packing one element at a time was 5-8% of a
       batch-1 3x3 conv over 256 channels. */
    #if CCB_VBYTES == 64 && CCB_MR == 8 && (defined(__clang__) || __GNUC__ >= 12)
    #define CCB_PACK16 1
    #define CCB_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
    static inline void ccb_pack16_f(const float* a, ptrdiff_t lda, float* dst) {
        typedef ccb_v_f V;
        V r[8], p[8], q[8];
        for (int i = 0; i < 8; i++)
            r[i] = *(const V*)(a + i * lda);
        for (int i = 0; i < 4; i++) {  /* row pairs: (row 2i, row 2i+1) per column */
            p[2 * i] = CCB_SHUF(r[2 * i], r[2 * i + 1], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            p[2 * i + 1] = CCB_SHUF(r[2 * i], r[2 * i + 1],
                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        }
        for (int i = 0; i < 2; i++)    /* rows 4i .. 4i+3 per column: columns 0-3, 4-7, 8-11, 12-15 */
            for (int h = 0; h < 2; h++) {
                q[4 * i + 2 * h] = CCB_SHUF(p[4 * i + h], p[4 * i + 2 + h],
                                            0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
                q[4 * i + 2 * h + 1] = CCB_SHUF(p[4 * i + h], p[4 * i + 2 + h],
                                                8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
            }
        for (int c = 0; c < 4; c++) {  /* all 8 rows: columns 4c, 4c+1 and 4c+2, 4c+3 */
            *(V*)(dst + 32 * c) = CCB_SHUF(q[c], q[4 + c], 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
            *(V*)(dst + 32 * c + 16) = CCB_SHUF(q[c], q[4 + c],
                                                8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
        }
    }
    #else
    #define CCB_PACK16 0
    static inline void ccb_pack16_f(const float* a, ptrdiff_t lda, float* dst) {
        for (int kk = 0; kk < 16; kk++)
            for (int r = 0; r < 8; r++)
                dst[kk * 8 + r] = a[r * lda + kk];
    }
    #endif
    /* A full pixel_gemm block whose 8 pixels are consecutive in the output: per channel j one
       store of its 8 results, out[lo[j] + 0..7] = tmp[0..7][j] (+ lb[j] unless init), the block
       transposed 16 channels at a time by ccb_pack16_f (stored one by one, the results took 3%
       of a 3x3 conv over 64 channels). Returns 0 where it does not apply (float64, no AVX-512). */
    static inline int ccx_store_run_f(const float* tmp, int ld, float* out, const ptrdiff_t* lo,
                                      const float* lb, int init, int nr) {
    #if CCB_PACK16
        typedef float V8 __attribute__((vector_size(32), aligned(4), may_alias));
        float t[16 * 8];
        for (int h = 0; h * 16 < nr; h++) {
            int n = nr - h * 16 < 16 ? nr - h * 16 : 16;
            ccb_pack16_f(tmp + h * 16, ld, t);  /* t[kk*8 + r] = tmp[r*ld + h*16 + kk] */
            for (int kk = 0; kk < n; kk++) {
                V8 v = *(const V8*)(t + kk * 8);
                if (!init)
                    v += lb[h * 16 + kk];
                *(V8*)(out + lo[h * 16 + kk]) = v;
            }
        }
        return 1;
    #else
        (void)tmp; (void)ld; (void)out; (void)lo; (void)lb; (void)init; (void)nr;
        return 0;
    #endif
    }
    static inline int ccx_store_run_d(const double* tmp, int ld, double* out, const ptrdiff_t* lo,
                                      const double* lb, int init, int nr) {
        (void)tmp; (void)ld; (void)out; (void)lo; (void)lb; (void)init; (void)nr;
        return 0;
    }
    CCX_DEF(float, f)
    CCX_DEF(double, d)
    #define CCB_NR_F (CCB_NV * CCB_VBYTES / (int)sizeof(float))
    #define CCB_NR_D (CCB_NV * CCB_VBYTES / (int)sizeof(double))
    #define CCP_PANEL_F (CCP_PANEL_BYTES / (int)sizeof(float))
    #define CCP_PANEL_D (CCP_PANEL_BYTES / (int)sizeof(double))
    """
    const int CCB_VBYTES
    const int CCB_MR
    const int CCB_PACK16
    const int CCB_NR_F
    const int CCB_NR_D
    const int CCP_PANEL_F
    const int CCP_PANEL_D
    void ccb_tile_f(Py_ssize_t k_n, const float* wp, Py_ssize_t ldw, const float* bp, const float* src,
                    const Py_ssize_t* koff, float* out, Py_ssize_t ldo, int mr, int nr) noexcept nogil
    void ccb_tile_d(Py_ssize_t k_n, const double* wp, Py_ssize_t ldw, const double* bp, const double* src,
                    const Py_ssize_t* koff, double* out, Py_ssize_t ldo, int mr, int nr) noexcept nogil
    void ccp_gemm_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* wp, Py_ssize_t ldw, const float* bias,
                    const float* b, Py_ssize_t ldb, float* c, Py_ssize_t ldc, float* panel) noexcept nogil
    void ccp_gemm_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* wp, Py_ssize_t ldw, const double* bias,
                    const double* b, Py_ssize_t ldb, double* c, Py_ssize_t ldc, double* panel) noexcept nogil
    void ccb_pack16_f(const float* a, Py_ssize_t lda, float* dst) noexcept nogil
    void ccx_gemm_f(Py_ssize_t m, Py_ssize_t p, Py_ssize_t k, const float* wp, const float* src,
                    const Py_ssize_t* koff, const Py_ssize_t* qoff, const Py_ssize_t* oo, float* out,
                    const Py_ssize_t* lo, const float* lb, int init) noexcept nogil
    void ccx_gemm_d(Py_ssize_t m, Py_ssize_t p, Py_ssize_t k, const double* wp, const double* src,
                    const Py_ssize_t* koff, const Py_ssize_t* qoff, const Py_ssize_t* oo, double* out,
                    const Py_ssize_t* lo, const double* lb, int init) noexcept nogil


cdef inline Py_ssize_t nr_of(floating dummy) noexcept nogil:
    """Columns of a micro-kernel block (CCB_NV vectors) for the dtype."""
    return CCB_NR_F if floating is float else CCB_NR_D


cdef inline Py_ssize_t panel_len(floating dummy) noexcept nogil:
    """Elements of the per-thread column panel scratch that panel_gemm needs."""
    return CCP_PANEL_F if floating is float else CCP_PANEL_D


cdef extern from "<stdlib.h>":
    int posix_memalign(void** ptr, size_t alignment, size_t size) nogil


cdef inline void* vector_malloc(size_t nbytes) noexcept nogil:
    """malloc for packed weights that the micro-kernels load as whole vectors: 64-byte aligned, so
    that no load splits a cache line (a large malloc is 16 bytes past a page start: a 4x4
    stride-2 layer at batch 1 ran 1.6x slower in such processes). NULL on failure; free() it."""
    cdef void* p = NULL
    if posix_memalign(&p, 64, nbytes if nbytes else 64) != 0:
        return NULL
    return p


cdef enum:
    # pixel_gemm stores each result by itself, about 16 / K of its FMAs: the reductions it takes
    # are at least this long on average
    PIXEL_MIN_K = 256
    # and a block of NR rows of its weights (K x NR) is at most this, to stay in L2 while every
    # pixel block of a tile reads it
    PIXEL_W_BYTES = 512 * 1024


cdef inline bint pixel_lanes_full(Py_ssize_t m, Py_ssize_t nr) noexcept nogil:
    """Whether m rows fill pixel_gemm's blocks of nr (its NR) rows at least three quarters."""
    return 4 * m >= 3 * ((m + nr - 1) // nr) * nr


cdef inline Py_ssize_t padded_rows(Py_ssize_t m) noexcept nogil:
    """Rows of a packed weight matrix of m rows: whole blocks of MR."""
    return (m + CCB_MR - 1) // CCB_MR * CCB_MR


cdef inline void tile(Py_ssize_t k_n, const floating* wp, Py_ssize_t ldw, const floating* bp,
                      const floating* src, const Py_ssize_t* koff, floating* out, Py_ssize_t ldo, int mr,
                      int nr) noexcept nogil:
    """One block over a gathered source: column k's NR values at src + koff[k]."""
    if floating is float:
        ccb_tile_f(k_n, wp, ldw, bp, src, koff, out, ldo, mr, nr)
    else:
        ccb_tile_d(k_n, wp, ldw, bp, src, koff, out, ldo, mr, nr)


cdef inline void gather_gemm(Py_ssize_t m, Py_ssize_t p, Py_ssize_t k, const floating* wp, Py_ssize_t ldw,
                             const floating* bias, const floating* src, const Py_ssize_t* koff,
                             floating* c, Py_ssize_t ldc) noexcept nogil:
    """C (m, p) = bias + A B, column q of B read in place at src[koff[kk] + q] (NR lanes from each
    block start must be readable); A packed (ldw = 0: pack_rows per block of MR rows, bias padded
    to whole blocks or NULL) or row-major with rows ldw apart (bias m long or NULL). Row blocks
    outer: a block's weights stay in L1 while its rows of C are written front to back."""
    cdef Py_ssize_t nr = nr_of(<floating>0), i0 = 0, q
    while i0 < m:
        q = 0
        while q < p:
            tile(k, wp + i0 * (ldw if ldw else k), ldw, bias + i0 if bias != NULL else NULL, src + q, koff,
                 c + i0 * ldc + q, ldc, <int>(m - i0 if m - i0 < CCB_MR else CCB_MR),
                 <int>(p - q if p - q < nr else nr))
            q = q + nr
        i0 = i0 + CCB_MR


cdef inline void panel_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* wp, Py_ssize_t ldw,
                             const floating* bias, const floating* b, Py_ssize_t ldb, floating* c,
                             Py_ssize_t ldc, floating* panel) noexcept nogil:
    """C (m, n) = bias + A B, A and bias as for gather_gemm; panel: panel_len elements of scratch."""
    if floating is float:
        ccp_gemm_f(m, n, k, wp, ldw, bias, b, ldb, c, ldc, panel)
    else:
        ccp_gemm_d(m, n, k, wp, ldw, bias, b, ldb, c, ldc, panel)


cdef inline void pack_rows(const floating* a, Py_ssize_t lda, Py_ssize_t nr, Py_ssize_t k, floating* dst,
                           Py_ssize_t bh) noexcept nogil:
    """One block of nr <= bh rows of k columns (row r at a + r*lda) packed: dst[kk*bh + r] =
    a[r*lda + kk], rows nr..bh-1 zero; bh is MR (panel_gemm's blocks) or NR (pixel_gemm's). A
    whole float block of MR goes 16 columns at a time by vector transposes; otherwise in chunks
    of 2048 / bh columns, so that the bh passes over a chunk's packed copy stay in L1 (one pass
    over all of K: 2.5x slower at K = 4608)."""
    cdef Py_ssize_t kk = 0, r, i, k1
    if floating is float:
        if CCB_PACK16 and bh == CCB_MR and nr == CCB_MR:
            while kk + 16 <= k:
                ccb_pack16_f(a + kk, lda, dst + kk * CCB_MR)
                kk = kk + 16
    while kk < k:
        k1 = min(kk + 2048 // bh, k)
        for r in range(bh):
            if r < nr:
                for i in range(kk, k1):
                    dst[i * bh + r] = a[r * lda + i]
            else:
                for i in range(kk, k1):
                    dst[i * bh + r] = 0
        kk = k1


cdef inline void pixel_gemm(Py_ssize_t m, Py_ssize_t p, Py_ssize_t k, const floating* wp, const floating* src,
                            const Py_ssize_t* koff, const Py_ssize_t* qoff, const Py_ssize_t* oo,
                            floating* out, const Py_ssize_t* lo, const floating* lb, bint init) noexcept nogil:
    """out[lo[j] + oo[q]] = sum_kk A[j, kk] * src[qoff[q] + koff[kk]] + lb[j] for j < m, q < p,
    lb[j] the first term when init (lb then readable up to whole blocks of NR), else the last:
    the pixels are the micro-kernel's broadcast rows, read in place, and A (packed per block of
    NR rows as (k, NR), rows past m zero) its vector columns. Equal bits to gather_gemm and
    panel_gemm with the bias as init (init) or added to their results (not init)."""
    if floating is float:
        ccx_gemm_f(m, p, k, wp, src, koff, qoff, oo, out, lo, lb, init)
    else:
        ccx_gemm_d(m, p, k, wp, src, koff, qoff, oo, out, lo, lb, init)
