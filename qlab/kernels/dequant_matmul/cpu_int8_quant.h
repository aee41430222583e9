// The activation side of the int8 kernels (cpu_int8_kernels.c, cpu_x8_kernels.c): x rounded to int8 per block
// as llama.cpp's CPU backend does, before any integer dot product.
//
//   x block, K-quants: d = max / -127 with max the signed value of largest magnitude; q = round(x / d) <= 127;
//                      bsum[k] = sum of the 16 quants of sub-block k (for the min / offset terms)
//   x block, Q8_0:     d = amax / 127, stored through fp16; q = round(x / d)
#ifndef QLAB_CPU_INT8_QUANT_H
#define QLAB_CPU_INT8_QUANT_H

#include "cpu_common.h"

#include <math.h>

#define MB_MAX 4  // activation rows per pass over a weight row (decoded weights reused from registers)

typedef struct {  // activations for the K-quants
    float d;
    int16_t bsum[16];   // sums of the quants of each 16
    int8_t q[256];
    int16_t bsum32[8];  // and of each 32 (the x8 Q4_K kernel's min term)
} xblk256;
typedef struct { float d; int8_t q[32]; } xblk32;                      // activations for Q8_0

#if defined(__F16C__)
static inline float fp16_round(float f) { return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }
#else
static inline float fp16_round(float f) { return f; }  // portable build: d kept in fp32 (differs by < 2^-11)
#endif

#if defined(__AVX2__) && defined(__FMA__)
// 8 x (4 x 8 int32) -> 32 int8 in order, saturating (so q > 127 becomes 127, as the reference clamps)
static inline __m256i pack32(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256i ab = _mm256_packs_epi32(_mm256_cvtps_epi32(a), _mm256_cvtps_epi32(b));  // round half even
    const __m256i cd = _mm256_packs_epi32(_mm256_cvtps_epi32(c), _mm256_cvtps_epi32(d));
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
static inline float abs_max(const float *x, int n) {  // n a multiple of 8
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 v = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) v = _mm256_max_ps(v, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
static inline void scale_pack(const float *x, int n, float scale, int8_t *q) {  // n a multiple of 32
    const __m256 s = _mm256_set1_ps(scale);
    for (int j = 0; j < n; j += 32)
        _mm256_storeu_si256((__m256i *)(q + j),
                            pack32(_mm256_mul_ps(s, _mm256_loadu_ps(x + j)), _mm256_mul_ps(s, _mm256_loadu_ps(x + j + 8)),
                                   _mm256_mul_ps(s, _mm256_loadu_ps(x + j + 16)),
                                   _mm256_mul_ps(s, _mm256_loadu_ps(x + j + 24))));
}
#else
static inline int nearest_int(float f) {  // round half to even for |f| < 2^22, without a libm call
    float v = f + 12582912.f;
    int i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}
static inline float abs_max(const float *x, int n) {
    float amax = 0.f;
    for (int j = 0; j < n; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}
static inline void scale_pack(const float *x, int n, float scale, int8_t *q) {
    for (int j = 0; j < n; j++) {
        const int v = nearest_int(scale * x[j]);
        q[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
    }
}
#endif

static inline void quantize_x256(const float *x, int64_t nb, xblk256 *o) {
    for (int64_t b = 0; b < nb; b++, x += 256) {
        const float amax = abs_max(x, 256);
        if (amax == 0.f) { memset(&o[b], 0, sizeof(xblk256)); continue; }
        float max = amax;  // the signed value of the first element of largest magnitude
        for (int j = 0; j < 256; j++)
            if (fabsf(x[j]) == amax) { max = x[j]; break; }
        const float iscale = -127.f / max;
        scale_pack(x, 256, iscale, o[b].q);
        for (int k = 0; k < 16; k++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += o[b].q[16 * k + j];
            o[b].bsum[k] = (int16_t)s;
        }
        for (int k = 0; k < 8; k++) o[b].bsum32[k] = (int16_t)(o[b].bsum[2 * k] + o[b].bsum[2 * k + 1]);
        o[b].d = 1.f / iscale;
    }
}

static inline void quantize_x32(const float *x, int64_t nb, xblk32 *o) {
    for (int64_t b = 0; b < nb; b++, x += 32) {
        const float amax = abs_max(x, 32);
        scale_pack(x, 32, amax != 0.f ? 127.f / amax : 0.f, o[b].q);
        o[b].d = fp16_round(amax / 127.f);
    }
}

#endif
