// Per-thread bodies of convcore's GPU kernels.
//
// Every function returns the value of the one element owned by flat thread index `i`. They are
// __host__ __device__ so that the host-emulation test can compile this file with the host C++
// compiler and run every thread index of a launch in a loop (tests/gpu/test_host_emulation.py).
// All index arithmetic is in long long: tensors of more than 2**31 elements are ordinary.
//
// The element type `real_t` (float or double) is #defined by whoever includes this file.
#ifndef CONVCORE_CONV_KERNELS_CUH
#define CONVCORE_CONV_KERNELS_CUH

#ifndef real_t
#error "define real_t (float or double) before including conv_kernels.cuh"
#endif

typedef long long idx_t;

// x (N, C, H, W) -> col (N, C, KH, KW, OH, OW): per image and group a (C/g*KH*KW, OH*OW) matrix.
__host__ __device__ inline real_t im2col_thread(
    idx_t i, const real_t* __restrict__ x, idx_t H, idx_t W, idx_t KH, idx_t KW, idx_t OH,
    idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw, idx_t dh, idx_t dw)
{
    const idx_t ow = i % OW;
    idx_t t = i / OW;
    const idx_t oh = t % OH;
    t /= OH;
    const idx_t kw = t % KW;
    t /= KW;
    const idx_t kh = t % KH;
    t /= KH;  // t = n * C + c
    const idx_t ih = oh * sh - ph + kh * dh;
    const idx_t iw = ow * sw - pw + kw * dw;
    return (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[(t * H + ih) * W + iw] : real_t(0);
}

// col (N, C_out, KH, KW, H, W) -> out (N, C_out, OH, OW), a gather: output element i sums the
// taps (kh, kw) whose source position (o + p - k*d) / s is an integer inside the input.
// The sum order (bias, then kh, then kw ascending) is fixed, so the result is deterministic.
__host__ __device__ inline real_t col2im_thread(
    idx_t i, const real_t* __restrict__ col, const real_t* __restrict__ bias, idx_t C_out,
    idx_t H, idx_t W, idx_t KH, idx_t KW, idx_t OH, idx_t OW, idx_t sh, idx_t sw, idx_t ph,
    idx_t pw, idx_t dh, idx_t dw, idx_t has_bias)
{
    const idx_t ow = i % OW;
    idx_t t = i / OW;
    const idx_t oh = t % OH;
    t /= OH;  // t = n * C_out + co
    real_t acc = has_bias ? bias[t % C_out] : real_t(0);
    const real_t* c = col + t * KH * KW * H * W;
    for (idx_t kh = 0; kh < KH; ++kh) {
        const idx_t y = oh + ph - kh * dh;
        if (y < 0) break;  // y only decreases with kh
        if (y % sh) continue;
        const idx_t ih = y / sh;
        if (ih >= H) continue;
        for (idx_t kw = 0; kw < KW; ++kw) {
            const idx_t z = ow + pw - kw * dw;
            if (z < 0) break;
            if (z % sw) continue;
            const idx_t iw = z / sw;
            if (iw >= W) continue;
            acc += c[((kh * KW + kw) * H + ih) * W + iw];
        }
    }
    return acc;
}

// col2im for dilation 1 (the sub-pixel decomposition): output phase (o + p) mod s uses exactly the
// taps k = phase, phase + s, ...; the others are never visited. Same taps, same order as
// col2im_thread, hence bitwise the same result.
__host__ __device__ inline real_t col2im_subpixel_thread(
    idx_t i, const real_t* __restrict__ col, const real_t* __restrict__ bias, idx_t C_out,
    idx_t H, idx_t W, idx_t KH, idx_t KW, idx_t OH, idx_t OW, idx_t sh, idx_t sw, idx_t ph,
    idx_t pw, idx_t has_bias)
{
    const idx_t ow = i % OW;
    idx_t t = i / OW;
    const idx_t oh = t % OH;
    t /= OH;
    real_t acc = has_bias ? bias[t % C_out] : real_t(0);
    const real_t* c = col + t * KH * KW * H * W;
    const idx_t y = oh + ph, z = ow + pw;
    for (idx_t kh = y % sh; kh < KH; kh += sh) {
        const idx_t ih = (y - kh) / sh;
        if (ih < 0) break;
        if (ih >= H) continue;
        for (idx_t kw = z % sw; kw < KW; kw += sw) {
            const idx_t iw = (z - kw) / sw;
            if (iw < 0) break;
            if (iw >= W) continue;
            acc += c[((kh * KW + kw) * H + ih) * W + iw];
        }
    }
    return acc;
}

// Direct conv2d, one output element per thread: for layers with few channels per group
// (depthwise), where a GEMM per group would be a matrix-vector product.
__host__ __device__ inline real_t conv_direct_thread(
    idx_t i, const real_t* __restrict__ x, const real_t* __restrict__ w,
    const real_t* __restrict__ bias, idx_t C_in, idx_t H, idx_t W, idx_t C_out, idx_t KH,
    idx_t KW, idx_t OH, idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw, idx_t dh, idx_t dw,
    idx_t groups, idx_t has_bias)
{
    const idx_t ow = i % OW;
    idx_t t = i / OW;
    const idx_t oh = t % OH;
    t /= OH;
    const idx_t co = t % C_out;
    const idx_t n = t / C_out;
    const idx_t cig = C_in / groups;
    const idx_t g = co / (C_out / groups);
    real_t acc = has_bias ? bias[co] : real_t(0);
    for (idx_t ci = 0; ci < cig; ++ci) {
        const real_t* xc = x + (n * C_in + g * cig + ci) * H * W;
        const real_t* wc = w + (co * cig + ci) * KH * KW;
        for (idx_t kh = 0; kh < KH; ++kh) {
            const idx_t ih = oh * sh - ph + kh * dh;
            if (ih < 0) continue;
            if (ih >= H) break;  // ih only grows with kh
            for (idx_t kw = 0; kw < KW; ++kw) {
                const idx_t iw = ow * sw - pw + kw * dw;
                if (iw < 0) continue;
                if (iw >= W) break;
                acc += xc[ih * W + iw] * wc[kh * KW + kw];
            }
        }
    }
    return acc;
}

// Direct conv_transpose2d as a gather, one output element per thread; w is (C_in, C_out/g, KH, KW).
__host__ __device__ inline real_t conv_transpose_direct_thread(
    idx_t i, const real_t* __restrict__ x, const real_t* __restrict__ w,
    const real_t* __restrict__ bias, idx_t C_in, idx_t H, idx_t W, idx_t C_out, idx_t KH,
    idx_t KW, idx_t OH, idx_t OW, idx_t sh, idx_t sw, idx_t ph, idx_t pw, idx_t dh, idx_t dw,
    idx_t groups, idx_t has_bias)
{
    const idx_t ow = i % OW;
    idx_t t = i / OW;
    const idx_t oh = t % OH;
    t /= OH;
    const idx_t co = t % C_out;
    const idx_t n = t / C_out;
    const idx_t cig = C_in / groups;
    const idx_t cog = C_out / groups;
    const idx_t g = co / cog;
    real_t acc = has_bias ? bias[co] : real_t(0);
    for (idx_t ci = 0; ci < cig; ++ci) {
        const real_t* xc = x + (n * C_in + g * cig + ci) * H * W;
        const real_t* wc = w + ((g * cig + ci) * cog + co % cog) * KH * KW;
        for (idx_t kh = 0; kh < KH; ++kh) {
            const idx_t y = oh + ph - kh * dh;
            if (y < 0) break;
            if (y % sh) continue;
            const idx_t ih = y / sh;
            if (ih >= H) continue;
            for (idx_t kw = 0; kw < KW; ++kw) {
                const idx_t z = ow + pw - kw * dw;
                if (z < 0) break;
                if (z % sw) continue;
                const idx_t iw = z / sw;
                if (iw >= W) continue;
                acc += xc[ih * W + iw] * wc[kh * KW + kw];
            }
        }
    }
    return acc;
}

// The bias of element i of out (N, C, L), added after a GEMM wrote out.
__host__ __device__ inline real_t bias_thread(
    idx_t i, const real_t* __restrict__ bias, idx_t C, idx_t L)
{
    return bias[(i / L) % C];
}

#endif  // CONVCORE_CONV_KERNELS_CUH
