// Per-thread bodies of convcore's GPU kernels.
//
// Every function returns the value of the one element owned by flat thread index `i`. They are
// __host__ __device__ so that the host-emulation test can compile this file with the host C++
// compiler and run every thread index of a launch in a loop (tests/gpu/test_host_emulation.py).
// The index type I is a template parameter: long long in general (tensors of more than 2**31
// elements are ordinary), int where the launcher found that every index and coordinate of the
// call fits (32-bit division and multiplication are several times cheaper on a GPU). Both
// compute the same values in the same order, so the result does not depend on I.
//
// The element type `real_t` (float or double) is #defined by whoever includes this file.
#ifndef CONVCORE_CONV_KERNELS_CUH
#define CONVCORE_CONV_KERNELS_CUH

#ifndef real_t
#error "define real_t (float or double) before including conv_kernels.cuh"
#endif

typedef long long idx_t;

// x (N, C, H, W) -> col (N, C, KH, KW, OH, OW): per image and group a (C/g*KH*KW, OH*OW) matrix.
template <typename I>
__host__ __device__ inline real_t im2col_thread(
    I i, const real_t* __restrict__ x, I H, I W, I KH, I KW, I OH,
    I OW, I sh, I sw, I ph, I pw, I dh, I dw)
{
    const I ow = i % OW;
    I t = i / OW;
    const I oh = t % OH;
    t /= OH;
    const I kw = t % KW;
    t /= KW;
    const I kh = t % KH;
    t /= KH;  // t = n * C + c
    const I ih = oh * sh - ph + kh * dh;
    const I iw = ow * sw - pw + kw * dw;
    return (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[(t * H + ih) * W + iw] : real_t(0);
}

// col (N, C_out, KH, KW, H, W) -> out (N, C_out, OH, OW), a gather: output element i sums the
// taps (kh, kw) whose source position (o + p - k*d) / s is an integer inside the input.
// The sum order (bias, then kh, then kw ascending) is fixed, so the result is deterministic.
template <typename I>
__host__ __device__ inline real_t col2im_thread(
    I i, const real_t* __restrict__ col, const real_t* __restrict__ bias, I C_out,
    I H, I W, I KH, I KW, I OH, I OW, I sh, I sw, I ph,
    I pw, I dh, I dw, I has_bias)
{
    const I ow = i % OW;
    I t = i / OW;
    const I oh = t % OH;
    t /= OH;  // t = n * C_out + co
    real_t acc = has_bias ? bias[t % C_out] : real_t(0);
    const real_t* c = col + t * KH * KW * H * W;
    for (I kh = 0; kh < KH; ++kh) {
        const I y = oh + ph - kh * dh;
        if (y < 0) break;  // y only decreases with kh
        if (y % sh) continue;
        const I ih = y / sh;
        if (ih >= H) continue;
        for (I kw = 0; kw < KW; ++kw) {
            const I z = ow + pw - kw * dw;
            if (z < 0) break;
            if (z % sw) continue;
            const I iw = z / sw;
            if (iw >= W) continue;
            acc += c[((kh * KW + kw) * H + ih) * W + iw];
        }
    }
    return acc;
}

// col2im for dilation 1 (the sub-pixel decomposition): output phase (o + p) mod s uses exactly the
// taps k = phase, phase + s, ...; the others are never visited. Same taps, same order as
// col2im_thread, hence bitwise the same result.
template <typename I>
__host__ __device__ inline real_t col2im_subpixel_thread(
    I i, const real_t* __restrict__ col, const real_t* __restrict__ bias, I C_out,
    I H, I W, I KH, I KW, I OH, I OW, I sh, I sw, I ph,
    I pw, I has_bias)
{
    const I ow = i % OW;
    I t = i / OW;
    const I oh = t % OH;
    t /= OH;
    real_t acc = has_bias ? bias[t % C_out] : real_t(0);
    const real_t* c = col + t * KH * KW * H * W;
    const I y = oh + ph, z = ow + pw;
    for (I kh = y % sh; kh < KH; kh += sh) {
        const I ih = (y - kh) / sh;
        if (ih < 0) break;
        if (ih >= H) continue;
        for (I kw = z % sw; kw < KW; kw += sw) {
            const I iw = (z - kw) / sw;
            if (iw < 0) break;
            if (iw >= W) continue;
            acc += c[((kh * KW + kw) * H + ih) * W + iw];
        }
    }
    return acc;
}

// Flat index i of an (N, C, OH, OW) output as its coordinates.
template <typename I>
struct OutputIndex {
    I n, co, oh, ow;
    __host__ __device__ OutputIndex(I i, I C, I OH, I OW)
    {
        ow = i % OW;
        I t = i / OW;
        oh = t % OH;
        t /= OH;
        co = t % C;
        n = t / C;
    }
};

// Direct conv2d, one output element per thread: for layers with few channels per group
// (depthwise), where a GEMM per group would be a matrix-vector product.
template <typename I>
__host__ __device__ inline real_t conv_direct_thread(
    I i, const real_t* __restrict__ x, const real_t* __restrict__ w,
    const real_t* __restrict__ bias, I C_in, I H, I W, I C_out, I KH,
    I KW, I OH, I OW, I sh, I sw, I ph, I pw, I dh, I dw,
    I groups, I has_bias)
{
    const OutputIndex<I> o(i, C_out, OH, OW);
    const I n = o.n, co = o.co, oh = o.oh, ow = o.ow;
    const I cig = C_in / groups;
    const I g = co / (C_out / groups);
    real_t acc = has_bias ? bias[co] : real_t(0);
    for (I ci = 0; ci < cig; ++ci) {
        const real_t* xc = x + (n * C_in + g * cig + ci) * H * W;
        const real_t* wc = w + (co * cig + ci) * KH * KW;
        for (I kh = 0; kh < KH; ++kh) {
            const I ih = oh * sh - ph + kh * dh;
            if (ih < 0) continue;
            if (ih >= H) break;  // ih only grows with kh
            for (I kw = 0; kw < KW; ++kw) {
                const I iw = ow * sw - pw + kw * dw;
                if (iw < 0) continue;
                if (iw >= W) break;
                acc += xc[ih * W + iw] * wc[kh * KW + kw];
            }
        }
    }
    return acc;
}

// Direct conv_transpose2d as a gather, one output element per thread; w is (C_in, C_out/g, KH, KW).
template <typename I>
__host__ __device__ inline real_t conv_transpose_direct_thread(
    I i, const real_t* __restrict__ x, const real_t* __restrict__ w,
    const real_t* __restrict__ bias, I C_in, I H, I W, I C_out, I KH,
    I KW, I OH, I OW, I sh, I sw, I ph, I pw, I dh, I dw,
    I groups, I has_bias)
{
    const OutputIndex<I> o(i, C_out, OH, OW);
    const I n = o.n, co = o.co, oh = o.oh, ow = o.ow;
    const I cig = C_in / groups;
    const I cog = C_out / groups;
    const I g = co / cog;
    real_t acc = has_bias ? bias[co] : real_t(0);
    if (dh == 1 && dw == 1) {
        // the sub-pixel decomposition, as in col2im_subpixel_thread: only the taps of this
        // output's phase, in the same ascending order as the general loop below
        const I y = oh + ph, z = ow + pw;
        const I kh0 = y % sh, kw0 = z % sw;
        for (I ci = 0; ci < cig; ++ci) {
            const real_t* xc = x + (n * C_in + g * cig + ci) * H * W;
            const real_t* wc = w + ((g * cig + ci) * cog + co % cog) * KH * KW;
            for (I kh = kh0; kh < KH; kh += sh) {
                const I ih = (y - kh) / sh;
                if (ih < 0) break;
                if (ih >= H) continue;
                for (I kw = kw0; kw < KW; kw += sw) {
                    const I iw = (z - kw) / sw;
                    if (iw < 0) break;
                    if (iw >= W) continue;
                    acc += xc[ih * W + iw] * wc[kh * KW + kw];
                }
            }
        }
        return acc;
    }
    for (I ci = 0; ci < cig; ++ci) {
        const real_t* xc = x + (n * C_in + g * cig + ci) * H * W;
        const real_t* wc = w + ((g * cig + ci) * cog + co % cog) * KH * KW;
        for (I kh = 0; kh < KH; ++kh) {
            const I y = oh + ph - kh * dh;
            if (y < 0) break;
            if (y % sh) continue;
            const I ih = y / sh;
            if (ih >= H) continue;
            for (I kw = 0; kw < KW; ++kw) {
                const I z = ow + pw - kw * dw;
                if (z < 0) break;
                if (z % sw) continue;
                const I iw = z / sw;
                if (iw >= W) continue;
                acc += xc[ih * W + iw] * wc[kh * KW + kw];
            }
        }
    }
    return acc;
}

// The bias of element i of out (N, C, L), added after a GEMM wrote out.
template <typename I>
__host__ __device__ inline real_t bias_thread(
    I i, const real_t* __restrict__ bias, I C, I L)
{
    return bias[(i / L) % C];
}

#endif  // CONVCORE_CONV_KERNELS_CUH
