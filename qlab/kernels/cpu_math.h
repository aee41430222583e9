// exp, sigmoid and silu for the CPU kernels' element-wise loops, written so that GCC vectorises them.
//
// Why not expf: libm's is a scalar call (glibc's vector variants need -ffast-math), so a loop of silu over a
// 17408-wide FFN activation ran ~170 us here, against ~15 us for this one. Accuracy: exp(r) on |r| <= ln2/2
// by its Taylor series to r^6 (truncation < 1e-7 relative), scaled by 2^n through the exponent bits; inputs
// are clamped to [-87, 88], where the float result neither overflows nor goes subnormal.
#ifndef QLAB_CPU_MATH_H
#define QLAB_CPU_MATH_H

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

static inline float qlab_sigmoidf(float x) { return 1.f / (1.f + qlab_expf(-x)); }
static inline float qlab_siluf(float x) { return x / (1.f + qlab_expf(-x)); }

#endif
