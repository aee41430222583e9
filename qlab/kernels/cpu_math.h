// exp, sigmoid and silu for the CPU kernels' element-wise loops, written so that GCC vectorises them.
//
// Why not expf: libm's is a scalar call (glibc's vector variants need -ffast-math), so a loop of silu over a
// 17408-wide FFN activation ran ~170 us here, against ~15 us for this one. Accuracy: exp(r) on |r| <= ln2/2
// by its Taylor series to r^6 (truncation < 1e-7 relative), scaled by 2^n through the exponent bits; inputs
// are clamped to [-87, 88], where the float result neither overflows nor goes subnormal.
#ifndef QLAB_CPU_MATH_H
#define QLAB_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float qlab_expf(float x) {
    x = x < -87.f ? -87.f : (x > 88.f ? 88.f : x);
    // n = round(x / ln2) by adding 1.5·2^23: the sum's low mantissa bits hold n (floorf and float->int
    // conversions would keep GCC from vectorising without -fno-trapping-math)
    const float t = x * 1.44269504088896341f + 12582912.f, n = t - 12582912.f;
    int32_t ti;
    memcpy(&ti, &t, 4);
    const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;   // ln2 split in two parts
    float p = 1.f / 720;
    p = p * r + 1.f / 120;
    p = p * r + 1.f / 24;
    p = p * r + 1.f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    const int32_t bits = (ti - 0x4b400000 + 127) << 23;   // 2^n: n + 127 in the exponent field
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

// e^x rounded as ggml's vectorised expf rounds it (the polynomial of Arm's optimized-routines expf, which llama.cpp's
// CPU backend uses for SiLU and SwiGLU): n = round(x / ln2) by the 1.5·2^23 shift, b = x − n·ln2 in two parts,
// p(b) of degree 5 by fused multiply-adds, times 2^n. Its AVX-512 build folds the 1 into p and scales by 2^n; its
// other builds compute k + k·(p − 1) with k = 2^n: the two round differently, and this build (-march=native) takes
// the branch a native llama.cpp build takes on the same CPU. x is clamped to [-87, 88] (2^n stays a normal float;
// SiLU's value does not change there). SiLU through this exp gives llama.cpp's bits where qlab_expf's differ in
// ~30 % of elements by an ulp, and each ulp can flip the int8 rounding of the next matmul's input.
static inline float qlab_expf_ggml(float x) {
    x = x < -87.f ? -87.f : (x > 88.f ? 88.f : x);
    const float z = fmaf(x, 0x1.715476p+0f, 0x1.8p23f), n = z - 0x1.8p23f;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x)), u = b * b;
    const float hi = fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f));
    int32_t zi;
    memcpy(&zi, &z, 4);
    const int32_t kbits = (int32_t)((uint32_t)zi << 23) + 0x3f800000;   // 2^n: n + 127 in the exponent field
    float k;
    memcpy(&k, &kbits, 4);
#if defined(__AVX512F__)
    return fmaf(hi, u, fmaf(0x1.ffffecp-1f, b, 1.f)) * k;
#else
    return fmaf(fmaf(hi, u, 0x1.ffffecp-1f * b), k, k);
#endif
}

static inline float qlab_sigmoidf(float x) { return 1.f / (1.f + qlab_expf(-x)); }
static inline float qlab_siluf(float x) { return x / (1.f + qlab_expf_ggml(-x)); }

#endif
