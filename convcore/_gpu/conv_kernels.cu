// convcore's GPU kernels: thin __global__ wrappers around the per-thread bodies of
// conv_kernels.cuh. Each thread owns whole output elements (no atomics: deterministic).
// Loaded by convcore/_gpu/__init__.py with cupy.RawModule after `#define real_t float|double`;
// launched with the grid and argument lists of convcore/_gpu/_plan.py (total element count first).
#include "conv_kernels.cuh"

// Grid-stride loop: the launcher caps the grid from the device's SM count, and every flat index
// below `total` is visited exactly once.
#define CONVCORE_FOR_EACH_ELEMENT(i, total)                                        \
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total);      \
         i += (idx_t)blockDim.x * gridDim.x)

// The loop above with the statement's index type I: int where the launcher passed `index32`
// (every index and coordinate of the call fits), else long long. The flag is the same for every
// thread, so the branch never diverges.
#define CONVCORE_FOR_EACH_ELEMENT_INDEXED(I, i, total, index32, ...)               \
    if (index32) {                                                                 \
        typedef int I;                                                             \
        CONVCORE_FOR_EACH_ELEMENT(i, total) __VA_ARGS__;                           \
    } else {                                                                       \
        typedef idx_t I;                                                           \
        CONVCORE_FOR_EACH_ELEMENT(i, total) __VA_ARGS__;                           \
    }

extern "C" __global__ void im2col(
    idx_t total, const real_t* __restrict__ x, real_t* __restrict__ col, idx_t H, idx_t W,
    idx_t KH, idx_t KW, idx_t OH, idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw, idx_t dh,
    idx_t dw, idx_t index32)
{
    CONVCORE_FOR_EACH_ELEMENT_INDEXED(I, i, total, index32,
        col[i] = im2col_thread<I>(i, x, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw))
}

extern "C" __global__ void col2im(
    idx_t total, const real_t* __restrict__ col, const real_t* __restrict__ bias,
    real_t* __restrict__ out, idx_t C_out, idx_t H, idx_t W, idx_t KH, idx_t KW, idx_t OH,
    idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw, idx_t dh, idx_t dw, idx_t has_bias,
    idx_t index32)
{
    CONVCORE_FOR_EACH_ELEMENT_INDEXED(I, i, total, index32,
        out[i] = col2im_thread<I>(i, col, bias, C_out, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh,
                                  dw, has_bias))
}

extern "C" __global__ void col2im_subpixel(
    idx_t total, const real_t* __restrict__ col, const real_t* __restrict__ bias,
    real_t* __restrict__ out, idx_t C_out, idx_t H, idx_t W, idx_t KH, idx_t KW, idx_t OH,
    idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw, idx_t has_bias, idx_t index32)
{
    CONVCORE_FOR_EACH_ELEMENT_INDEXED(I, i, total, index32,
        out[i] = col2im_subpixel_thread<I>(i, col, bias, C_out, H, W, KH, KW, OH, OW, sh, sw,
                                           ph, pw, has_bias))
}

extern "C" __global__ void conv_direct(
    idx_t total, const real_t* __restrict__ x, const real_t* __restrict__ w,
    const real_t* __restrict__ bias, real_t* __restrict__ out, idx_t C_in, idx_t H, idx_t W,
    idx_t C_out, idx_t KH, idx_t KW, idx_t OH, idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw,
    idx_t dh, idx_t dw, idx_t groups, idx_t has_bias, idx_t index32)
{
    CONVCORE_FOR_EACH_ELEMENT_INDEXED(I, i, total, index32,
        out[i] = conv_direct_thread<I>(i, x, w, bias, C_in, H, W, C_out, KH, KW, OH, OW, sh, sw,
                                       ph, pw, dh, dw, groups, has_bias))
}

extern "C" __global__ void conv_transpose_direct(
    idx_t total, const real_t* __restrict__ x, const real_t* __restrict__ w,
    const real_t* __restrict__ bias, real_t* __restrict__ out, idx_t C_in, idx_t H, idx_t W,
    idx_t C_out, idx_t KH, idx_t KW, idx_t OH, idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw,
    idx_t dh, idx_t dw, idx_t groups, idx_t has_bias, idx_t index32)
{
    CONVCORE_FOR_EACH_ELEMENT_INDEXED(I, i, total, index32,
        out[i] = conv_transpose_direct_thread<I>(i, x, w, bias, C_in, H, W, C_out, KH, KW, OH,
                                                 OW, sh, sw, ph, pw, dh, dw, groups, has_bias))
}

extern "C" __global__ void add_bias(
    idx_t total, real_t* __restrict__ out, const real_t* __restrict__ bias, idx_t C, idx_t L,
    idx_t index32)
{
    CONVCORE_FOR_EACH_ELEMENT_INDEXED(I, i, total, index32, out[i] += bias_thread<I>(i, bias, C, L))
}
