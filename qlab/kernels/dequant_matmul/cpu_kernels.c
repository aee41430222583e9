// Dequantizing GEMV/GEMM for small M on the CPU, reading ggml blocks in place (no repack, no weight copy).
//
// y[m, n] = sum_k x[m, k] · w[n, k], w decoded block by block in registers, fp32 accumulate.
// Plain C written so that gcc -O3 -march=native vectorises the inner 32-wide loops (AVX2/AVX-512 on x86,
// NEON on arm64): the per-element accumulators `acc[m][i]` stay in vector registers across a whole row and
// are reduced once per row, so there is no horizontal add per block. Rows are split over OpenMP threads
// (the same libgomp torch loads, so both share one thread pool).
// Exactness: weights are decoded exactly as ggml does (fp16 scales times small integers); x stays fp32, so
// the only error vs "dequantize then fp32 matmul" is summation order.

#include "cpu_common.h"
#define MB_MAX 4  // activation rows per pass: MB_MAX × (32 or 64) fp32 accumulators stay in vector registers

// One vector abstraction over AVX-512 / AVX2 (x86) so the kernels are written once; VW fp32 lanes.
#if defined(__AVX512F__)
#define VW 16
typedef __m512 vf;
typedef __m512i vi;
#define V_LOADX(p) _mm512_loadu_ps(p)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_SET1(s) _mm512_set1_ps(s)
#define V_ZERO() _mm512_setzero_ps()
#define V_CVT(i) _mm512_cvtepi32_ps(i)
#define V_U8(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)))  // VW bytes -> VW int32
#define V_I8(p) _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define VI_AND15(i) _mm512_and_si512(i, _mm512_set1_epi32(15))
#define VI_SHR4(i) _mm512_srli_epi32(i, 4)
#define V_SET1I(s) _mm512_set1_epi32(s)
static inline vf V_FP8(const uint8_t *p) {  // 16 e4m3 bytes -> 16 floats, times 2^-8 (see fp8_row)
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7),
                                      _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8));
    return _mm512_cvtph_ps(h);
}
static inline vi v_u8_part(__m128i b, int part) { (void)part; return _mm512_cvtepu8_epi32(b); }  // 16 bytes
// 16-entry int32 table lookup, idx in 0..15
static inline vi v_lookup16(vi idx, const int32_t *t) { return _mm512_permutexvar_epi32(idx, _mm512_loadu_si512(t)); }
#define VI_AND(a, b) _mm512_and_si512(a, b)
#define VI_OR(a, b) _mm512_or_si512(a, b)
#define VI_SUB(a, b) _mm512_sub_epi32(a, b)
#define VI_SHR(a, n) _mm512_srli_epi32(a, n)
#define VI_SHL(a, n) _mm512_slli_epi32(a, n)
static inline float v_sum(vf v) { return _mm512_reduce_add_ps(v); }
#define HAVE_VEC 1
#elif defined(__AVX2__) && defined(__FMA__)
#define VW 8
typedef __m256 vf;
typedef __m256i vi;
#define V_LOADX(p) _mm256_loadu_ps(p)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_SET1(s) _mm256_set1_ps(s)
#define V_ZERO() _mm256_setzero_ps()
#define V_CVT(i) _mm256_cvtepi32_ps(i)
#define V_U8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
#define V_I8(p) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
#define VI_AND15(i) _mm256_and_si256(i, _mm256_set1_epi32(15))
#define VI_SHR4(i) _mm256_srli_epi32(i, 4)
#define V_SET1I(s) _mm256_set1_epi32(s)
static inline vf V_FP8(const uint8_t *p) {  // 8 e4m3 bytes -> 8 floats, times 2^-8 (see fp8_row)
    const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)p));
    const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7f)), 7),
                                   _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8));
    return _mm256_cvtph_ps(h);
}
static inline vi v_u8_part(__m128i b, int part) {  // bytes 8·part .. 8·part+7 of b
    return _mm256_cvtepu8_epi32(part ? _mm_srli_si128(b, 8) : b);
}
static inline vi v_lookup16(vi idx, const int32_t *t) {  // two 8-entry permutes, picked by bit 3 of idx
    const __m256i lo = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)t), idx);
    const __m256i hi = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(t + 8)), idx);
    return _mm256_blendv_epi8(lo, hi, _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
}
#define VI_AND(a, b) _mm256_and_si256(a, b)
#define VI_OR(a, b) _mm256_or_si256(a, b)
#define VI_SUB(a, b) _mm256_sub_epi32(a, b)
#define VI_SHR(a, n) _mm256_srli_epi32(a, n)
#define VI_SHL(a, n) _mm256_slli_epi32(a, n)
static inline float v_sum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define HAVE_VEC 1
#endif

static inline void q4_k_scales(const uint8_t *s, float d, float dmin, float *dsc, float *dm) {
    for (int j = 0; j < 4; j++) {
        dsc[j] = d * (float)(s[j] & 63);
        dm[j] = dmin * (float)(s[j + 4] & 63);
        dsc[j + 4] = d * (float)((s[j + 8] & 15) | ((s[j] >> 6) << 4));
        dm[j + 4] = dmin * (float)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

#ifdef HAVE_VEC
// ---------------- Q8_0: { half d; int8 qs[32]; }  w = d·q ------------------------------------------------------
#define Q8V (32 / VW)
static inline __attribute__((always_inline)) void
q8_0_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX][Q8V];
    for (int m = 0; m < mb; m++)
        for (int v = 0; v < Q8V; v++) acc[m][v] = V_ZERO();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 34 * b;
        PREFETCH(blk);
        const vf d = V_SET1(h2f(blk));
        vf w[Q8V];
        for (int v = 0; v < Q8V; v++) w[v] = V_MUL(d, V_CVT(V_I8(blk + 2 + VW * v)));
        for (int m = 0; m < mb; m++)
            for (int v = 0; v < Q8V; v++) acc[m][v] = V_FMA(w[v], V_LOADX(x + m * K + 32 * b + VW * v), acc[m][v]);
    }
    for (int m = 0; m < mb; m++) {
        vf s = acc[m][0];
        for (int v = 1; v < Q8V; v++) s = s + acc[m][v];  // gcc vector extension
        out[m] = v_sum(s);
    }
}

// ---------------- Q4_K: { half d, dmin; u8 scales[12]; u8 qs[128]; }  w = d·sc·q − dmin·m -------------------
#define Q4V (32 / VW)  // vectors per 32-weight sub-block
// Scales are applied per sub-block to a partial dot (one FMA per 32 weights instead of one per weight), and the
// "min" term becomes dmin·m_j·sum(x over sub-block j), from sub-block sums xs computed once per call.
static inline __attribute__((always_inline)) void
q4_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    vf acc[MB_MAX];
    __m256 macc[MB_MAX];  // dmin·m_j·xs_j, 8 sub-blocks wide
    for (int m = 0; m < mb; m++) { acc[m] = V_ZERO(); macc[m] = _mm256_setzero_ps(); }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 144 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        PREFETCH(blk + 128);
        // 8 six-bit scales and 8 six-bit mins, then 8 floats each
        uint64_t sc8, mn8;
        k4_scales(blk + 4, &sc8, &mn8);
        const __m256 vsc = _mm256_mul_ps(_mm256_set1_ps(h2f(blk)),
                                         _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc8))));
        const __m256 vmn = _mm256_mul_ps(_mm256_set1_ps(h2f(blk + 2)),
                                         _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn8))));
        float dsc[8];
        _mm256_storeu_ps(dsc, vsc);
        for (int m = 0; m < mb; m++) macc[m] = _mm256_fmadd_ps(vmn, _mm256_loadu_ps(xs + m * (K / 32) + 8 * b), macc[m]);
        const uint8_t *qs = blk + 16;
        for (int c = 0; c < 4; c++) {  // 32 bytes: sub-block 2c in the low nibbles, 2c+1 in the high ones
            vf tl[MB_MAX], th[MB_MAX];
            for (int v = 0; v < Q4V; v++) {
                const vi q = V_U8(qs + 32 * c + VW * v);
                const vf ql = V_CVT(VI_AND15(q)), qh = V_CVT(VI_SHR4(q));
                for (int m = 0; m < mb; m++) {
                    const float *xm = x + m * K + 256 * b + 64 * c + VW * v;
                    tl[m] = v ? V_FMA(ql, V_LOADX(xm), tl[m]) : V_MUL(ql, V_LOADX(xm));
                    th[m] = v ? V_FMA(qh, V_LOADX(xm + 32), th[m]) : V_MUL(qh, V_LOADX(xm + 32));
                }
            }
            const vf s0 = V_SET1(dsc[2 * c]), s1 = V_SET1(dsc[2 * c + 1]);
            for (int m = 0; m < mb; m++) acc[m] = V_FMA(th[m], s1, V_FMA(tl[m], s0, acc[m]));
        }
    }
    for (int m = 0; m < mb; m++) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(macc[m]), _mm256_extractf128_ps(macc[m], 1));
        s = _mm_hadd_ps(s, s);
        out[m] = v_sum(acc[m]) - _mm_cvtss_f32(_mm_hadd_ps(s, s));
    }
}

// ---------------- Q6_K: { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }  w = d·sc_j·(q − 32) -----------------
// Each 128-weight half h reads ql[64h..], qh[32h..]; its 32-weight group t (0..3) takes the low (t < 2) or high
// nibbles of ql[64h + 32(t % 2) + i] and bits 2t..2t+1 of qh[32h + i]; 16-weight sub-block j has scale sc[j].
static inline __attribute__((always_inline)) void
q6_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = V_ZERO();
    const vi m32 = V_SET1I(32), m15 = V_SET1I(15), m3 = V_SET1I(3);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 210 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        PREFETCH(blk + 128);
        PREFETCH(blk + 192);
        const float d = h2f(blk + 208);
        float dsc[16];
        for (int j = 0; j < 16; j++) dsc[j] = d * (float)(int8_t)blk[192 + j];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
            for (int v = 0; v < 32 / VW; v++) {
                const vi a = V_U8(ql + VW * v), c = V_U8(ql + 32 + VW * v), hb = V_U8(qh + VW * v);
                vi q[4];
                q[0] = VI_OR(VI_AND(a, m15), VI_SHL(VI_AND(hb, m3), 4));
                q[1] = VI_OR(VI_AND(c, m15), VI_SHL(VI_AND(VI_SHR(hb, 2), m3), 4));
                q[2] = VI_OR(VI_SHR(a, 4), VI_SHL(VI_AND(VI_SHR(hb, 4), m3), 4));
                q[3] = VI_OR(VI_SHR(c, 4), VI_SHL(VI_SHR(hb, 6), 4));
                for (int t = 0; t < 4; t++) {
                    const int j = 8 * h + 2 * t + (VW * v) / 16;
                    const vf w = V_MUL(V_CVT(VI_SUB(q[t], m32)), V_SET1(dsc[j]));
                    for (int m = 0; m < mb; m++)
                        acc[m] = V_FMA(w, V_LOADX(x + m * K + 256 * b + 128 * h + 32 * t + VW * v), acc[m]);
                }
            }
        }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]);
}

// ---------------- Q5_K: { half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }  Q4_K plus a 5th bit ----------
// qh[i] bit j is the high bit of element i of sub-block j; the rest is Q4_K's arithmetic.
static inline __attribute__((always_inline)) void
q5_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    vf acc[MB_MAX];
    float macc[MB_MAX];
    for (int m = 0; m < mb; m++) { acc[m] = V_ZERO(); macc[m] = 0.f; }
    const vi one = V_SET1I(1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 176 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        PREFETCH(blk + 128);
        float dsc[8], dm[8];
        q4_k_scales(blk + 4, h2f(blk), h2f(blk + 2), dsc, dm);
        for (int m = 0; m < mb; m++)
            for (int j = 0; j < 8; j++) macc[m] += dm[j] * xs[m * (K / 32) + 8 * b + j];
        for (int c = 0; c < 4; c++) {
            vf tl[MB_MAX], th[MB_MAX];
            for (int v = 0; v < 32 / VW; v++) {
                const vi q = V_U8(blk + 48 + 32 * c + VW * v), hb = V_U8(blk + 16 + VW * v);
                const vf ql = V_CVT(VI_OR(VI_AND15(q), VI_SHL(VI_AND(VI_SHR(hb, 2 * c), one), 4)));
                const vf qh = V_CVT(VI_OR(VI_SHR4(q), VI_SHL(VI_AND(VI_SHR(hb, 2 * c + 1), one), 4)));
                for (int m = 0; m < mb; m++) {
                    const float *xm = x + m * K + 256 * b + 64 * c + VW * v;
                    tl[m] = v ? V_FMA(ql, V_LOADX(xm), tl[m]) : V_MUL(ql, V_LOADX(xm));
                    th[m] = v ? V_FMA(qh, V_LOADX(xm + 32), th[m]) : V_MUL(qh, V_LOADX(xm + 32));
                }
            }
            const vf s0 = V_SET1(dsc[2 * c]), s1 = V_SET1(dsc[2 * c + 1]);
            for (int m = 0; m < mb; m++) acc[m] = V_FMA(th[m], s1, V_FMA(tl[m], s0, acc[m]));
        }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]) - macc[m];
}

// ---------------- Q4_0: { half d; u8 qs[16]; }  w = d·(q − 8); byte i = element i (low) | i + 16 (high) --------
static inline __attribute__((always_inline)) void
q4_0_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = V_ZERO();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 18 * b;
        PREFETCH(blk);
        const float d = h2f(blk);
        const vf vd = V_SET1(d), voff = V_SET1(-8.f * d);
        for (int v = 0; v < 16 / VW; v++) {
            const vi q = V_U8(blk + 2 + VW * v);
            const vf wl = V_FMA(V_CVT(VI_AND15(q)), vd, voff), wh = V_FMA(V_CVT(VI_SHR4(q)), vd, voff);
            for (int m = 0; m < mb; m++) {
                const float *xm = x + m * K + 32 * b + VW * v;
                acc[m] = V_FMA(wh, V_LOADX(xm + 16), V_FMA(wl, V_LOADX(xm), acc[m]));
            }
        }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]);
}

// ---------------- IQ4_XS: { half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }  w = d·(ls_j − 32)·KV[q] -------
// sub-block j (32 weights) reads qs[16j..16j+16]: low nibbles elements 0..15, high nibbles 16..31.
static const int32_t KV_IQ4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static inline __attribute__((always_inline)) void
iq4_xs_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = V_ZERO();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 136 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        PREFETCH(blk + 128);
        const float d = h2f(blk);
        const unsigned sh = (unsigned)blk[2] | ((unsigned)blk[3] << 8);
        for (int j = 0; j < 8; j++) {
            const int ls = (((blk[4 + j / 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)) - 32;
            const vf s = V_SET1(d * (float)ls);
            for (int v = 0; v < 16 / VW; v++) {
                const vi q = V_U8(blk + 8 + 16 * j + VW * v);
                const vf wl = V_MUL(V_CVT(v_lookup16(VI_AND15(q), KV_IQ4)), s);
                const vf wh = V_MUL(V_CVT(v_lookup16(VI_SHR4(q), KV_IQ4)), s);
                for (int m = 0; m < mb; m++) {
                    const float *xm = x + m * K + 256 * b + 32 * j + VW * v;
                    acc[m] = V_FMA(wh, V_LOADX(xm + 16), V_FMA(wl, V_LOADX(xm), acc[m]));
                }
            }
        }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]);
}

// ---------------- Q2_K / Q3_K: 16-weight sub-blocks, 2-bit planes ---------------------------------------------
// Element p = 128h + 32s + i takes bits 2s..2s+1 of qs[32h + i] (and, for Q3_K, bit 4h + s of hmask[i]);
// its sub-block is p / 16. Q2_K: w = d·sc_j·q − dmin·m_j; Q3_K: w = d·(sc_j − 32)·(q − 4).
static inline __attribute__((always_inline)) void
q2_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = V_ZERO();
    const vi three = V_SET1I(3);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 84 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        const float d = h2f(blk + 80), dmin = h2f(blk + 82);
        float sc[16], mn[16];
        for (int j = 0; j < 16; j++) { sc[j] = d * (float)(blk[j] & 15); mn[j] = -dmin * (float)(blk[j] >> 4); }
        for (int h = 0; h < 2; h++)
            for (int v = 0; v < 32 / VW; v++) {
                const vi qb = V_U8(blk + 16 + 32 * h + VW * v);
                for (int s = 0; s < 4; s++) {
                    const int j = 8 * h + 2 * s + (VW * v) / 16;
                    const vf w = V_FMA(V_CVT(VI_AND(VI_SHR(qb, 2 * s), three)), V_SET1(sc[j]), V_SET1(mn[j]));
                    for (int m = 0; m < mb; m++)
                        acc[m] = V_FMA(w, V_LOADX(x + m * K + 256 * b + 128 * h + 32 * s + VW * v), acc[m]);
                }
            }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]);
}

static inline int q3_k_scale(const uint8_t *s, int k) {
    return (((s[k % 8] >> (4 * (k / 8))) & 15) | (((s[8 + k % 4] >> (2 * (k / 4))) & 3) << 4)) - 32;
}

static inline __attribute__((always_inline)) void
q3_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = V_ZERO();
    const vi three = V_SET1I(3), one = V_SET1I(1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 110 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        const float d = h2f(blk + 108);
        float sc[16];
        for (int j = 0; j < 16; j++) sc[j] = d * (float)q3_k_scale(blk + 96, j);
        for (int h = 0; h < 2; h++)
            for (int v = 0; v < 32 / VW; v++) {
                const vi qb = V_U8(blk + 32 + 32 * h + VW * v), hb = V_U8(blk + VW * v);
                for (int s = 0; s < 4; s++) {
                    const int j = 8 * h + 2 * s + (VW * v) / 16;
                    const vi q = VI_OR(VI_AND(VI_SHR(qb, 2 * s), three), VI_SHL(VI_AND(VI_SHR(hb, 4 * h + s), one), 2));
                    const vf w = V_FMA(V_CVT(q), V_SET1(sc[j]), V_SET1(-4.f * sc[j]));
                    for (int m = 0; m < mb; m++)
                        acc[m] = V_FMA(w, V_LOADX(x + m * K + 256 * b + 128 * h + 32 * s + VW * v), acc[m]);
                }
            }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]);
}

// ---------------- FP8 e4m3fn, one byte per weight (rows of 32-byte "blocks"); per-channel scale applied by caller --
// (b & 0x7f) << 7 | (b & 0x80) << 8 is an fp16 whose value is e4m3(b)·2^-8 (normals and subnormals alike: fp16
// has the wider exponent), so the hardware fp16 -> fp32 conversion decodes 16 weights at once; the caller
// multiplies y by 256·scale[n]. (NaN codes 0x7f/0xff are never produced by quantize and are not special-cased.)
static inline __attribute__((always_inline)) void
fp8_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = V_ZERO();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 32 * b;
        PREFETCH(blk);
        for (int v = 0; v < 32 / VW; v++) {
            const vf w = V_FP8(blk + VW * v);
            for (int m = 0; m < mb; m++) acc[m] = V_FMA(w, V_LOADX(x + m * K + 32 * b + VW * v), acc[m]);
        }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]);
}

// ---------------- INT4-G128: { u8 qs[64]; half scale; half zero; }  w = (q − zero)·scale -------------------------
// Byte t holds elements 2t (low) and 2t+1 (high): unpacking the low and high nibbles byte-wise puts 16 bytes of
// codes back in element order, 32 weights per 16 bytes. Σ (q − z)·s·x = s·(Σ q·x − z·Σx), Σx from the sub-block sums.
static inline __attribute__((always_inline)) void
int4_g128_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    vf acc[MB_MAX];
    float macc[MB_MAX];
    for (int m = 0; m < mb; m++) { acc[m] = V_ZERO(); macc[m] = 0.f; }
    const __m128i low4 = _mm_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 68 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        const float s = h2f(blk + 64), z = h2f(blk + 66);
        for (int m = 0; m < mb; m++) {
            const float *xsm = xs + m * (K / 32) + 4 * b;
            macc[m] += s * z * (xsm[0] + xsm[1] + xsm[2] + xsm[3]);
        }
        vf t[MB_MAX];
        for (int m = 0; m < mb; m++) t[m] = V_ZERO();
        for (int c = 0; c < 4; c++) {  // 16 bytes = elements 32c .. 32c+31
            const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 16 * c));
            const __m128i lo = _mm_and_si128(raw, low4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
            const __m128i e[2] = {_mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi)};  // element order
            for (int u = 0; u < 2; u++)
                for (int v = 0; v < 16 / VW; v++) {
                    const vf q = V_CVT(v_u8_part(e[u], v));
                    for (int m = 0; m < mb; m++)
                        t[m] = V_FMA(q, V_LOADX(x + m * K + 128 * b + 32 * c + 16 * u + VW * v), t[m]);
                }
        }
        const vf vs = V_SET1(s);
        for (int m = 0; m < mb; m++) acc[m] = V_FMA(t[m], vs, acc[m]);
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]) - macc[m];
}

// ---------------- MXFP4: { u8 e; u8 qs[16]; }  w = 2^(e−128)·KV[q] (ggml: half the e8m0 scale, doubled e2m1) -----
static const int32_t KV_MXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
static inline float e8m0_half(uint8_t e) {  // ggml_e8m0_to_fp32_half
    const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static inline __attribute__((always_inline)) void
mxfp4_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb, float *out) {
    (void)xs;
    vf acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = V_ZERO();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 17 * b;
        PREFETCH(blk);
        const vf d = V_SET1(e8m0_half(blk[0]));
        for (int v = 0; v < 16 / VW; v++) {
            const vi q = V_U8(blk + 1 + VW * v);
            const vf wl = V_MUL(V_CVT(v_lookup16(VI_AND15(q), KV_MXFP4)), d);
            const vf wh = V_MUL(V_CVT(v_lookup16(VI_SHR4(q), KV_MXFP4)), d);
            for (int m = 0; m < mb; m++) {
                const float *xm = x + m * K + 32 * b + VW * v;
                acc[m] = V_FMA(wh, V_LOADX(xm + 16), V_FMA(wl, V_LOADX(xm), acc[m]));
            }
        }
    }
    for (int m = 0; m < mb; m++) out[m] = v_sum(acc[m]);
}

#else  // portable C (other CPUs): correct, left to the compiler's auto-vectoriser
static inline void q8_0_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                            float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 34 * b;
            const float d = h2f(blk);
            float t = 0.f;
            for (int i = 0; i < 32; i++) t += (float)((const int8_t *)(blk + 2))[i] * x[m * K + 32 * b + i];
            s += d * t;
        }
        out[m] = s;
    }
}

static inline void q4_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                            float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 144 * b;
            float dsc[8], dm[8];
            q4_k_scales(blk + 4, h2f(blk), h2f(blk + 2), dsc, dm);
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 32; i++) {
                    const uint8_t q = blk[16 + 32 * c + i];
                    s += (dsc[2 * c] * (float)(q & 15) - dm[2 * c]) * x[m * K + 256 * b + 64 * c + i];
                    s += (dsc[2 * c + 1] * (float)(q >> 4) - dm[2 * c + 1]) * x[m * K + 256 * b + 64 * c + 32 + i];
                }
        }
        out[m] = s;
    }
}
static inline void q6_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                            float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 210 * b;
            const float d = h2f(blk + 208);
            for (int p = 0; p < 256; p++) {
                const int h = p / 128, r = p % 128, t = r / 32, i = r % 32;
                const uint8_t lo = blk[64 * h + 32 * (t % 2) + i], hi = blk[128 + 32 * h + i];
                const int q = (((t < 2) ? (lo & 15) : (lo >> 4)) | (((hi >> (2 * t)) & 3) << 4)) - 32;
                s += d * (float)(int8_t)blk[192 + p / 16] * (float)q * x[m * K + 256 * b + p];
            }
        }
        out[m] = s;
    }
}
static inline void q5_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                            float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 176 * b;
            float dsc[8], dm[8];
            q4_k_scales(blk + 4, h2f(blk), h2f(blk + 2), dsc, dm);
            for (int p = 0; p < 256; p++) {
                const int j = p / 32, i = p % 32;
                const uint8_t byte = blk[48 + 32 * (j / 2) + i];
                const int q = ((j % 2) ? (byte >> 4) : (byte & 15)) | (((blk[16 + i] >> j) & 1) << 4);
                s += (dsc[j] * (float)q - dm[j]) * x[m * K + 256 * b + p];
            }
        }
        out[m] = s;
    }
}

static inline void q4_0_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                            float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 18 * b;
            const float d = h2f(blk);
            for (int i = 0; i < 16; i++) {
                s += d * (float)((blk[2 + i] & 15) - 8) * x[m * K + 32 * b + i];
                s += d * (float)((blk[2 + i] >> 4) - 8) * x[m * K + 32 * b + 16 + i];
            }
        }
        out[m] = s;
    }
}
static const int32_t KV_IQ4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static inline void iq4_xs_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K,
                              const int mb, float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 136 * b;
            const float d = h2f(blk);
            const unsigned sh = (unsigned)blk[2] | ((unsigned)blk[3] << 8);
            for (int j = 0; j < 8; j++) {
                const int ls = (((blk[4 + j / 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)) - 32;
                for (int i = 0; i < 16; i++) {
                    const uint8_t q = blk[8 + 16 * j + i];
                    s += d * (float)ls * (float)KV_IQ4[q & 15] * x[m * K + 256 * b + 32 * j + i];
                    s += d * (float)ls * (float)KV_IQ4[q >> 4] * x[m * K + 256 * b + 32 * j + 16 + i];
                }
            }
        }
        out[m] = s;
    }
}
static inline int q3_k_scale(const uint8_t *s, int k) {
    return (((s[k % 8] >> (4 * (k / 8))) & 15) | (((s[8 + k % 4] >> (2 * (k / 4))) & 3) << 4)) - 32;
}

static inline void q2_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                            float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 84 * b;
            const float d = h2f(blk + 80), dmin = h2f(blk + 82);
            for (int p = 0; p < 256; p++) {
                const int h = p / 128, pl = (p % 128) / 32, i = p % 32, j = p / 16;
                const int q = (blk[16 + 32 * h + i] >> (2 * pl)) & 3;
                s += (d * (float)(blk[j] & 15) * (float)q - dmin * (float)(blk[j] >> 4)) * x[m * K + 256 * b + p];
            }
        }
        out[m] = s;
    }
}

static inline void q3_k_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                            float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 110 * b;
            const float d = h2f(blk + 108);
            for (int p = 0; p < 256; p++) {
                const int h = p / 128, pl = (p % 128) / 32, i = p % 32;
                const int q = (((blk[32 + 32 * h + i] >> (2 * pl)) & 3) | (((blk[i] >> (4 * h + pl)) & 1) << 2)) - 4;
                s += d * (float)q3_k_scale(blk + 96, p / 16) * (float)q * x[m * K + 256 * b + p];
            }
        }
        out[m] = s;
    }
}
static inline void fp8_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K, const int mb,
                           float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t k = 0; k < 32 * nb; k++) {
            const uint16_t h = (uint16_t)(((row[k] & 0x7f) << 7) | ((row[k] & 0x80) << 8));
            uint8_t hb[2];
            memcpy(hb, &h, 2);
            s += h2f(hb) * x[m * K + k];
        }
        out[m] = s;
    }
}
static inline void int4_g128_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K,
                                 const int mb, float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float acc = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 68 * b;
            const float s = h2f(blk + 64), z = h2f(blk + 66);
            for (int t = 0; t < 64; t++) {
                acc += ((float)(blk[t] & 15) - z) * s * x[m * K + 128 * b + 2 * t];
                acc += ((float)(blk[t] >> 4) - z) * s * x[m * K + 128 * b + 2 * t + 1];
            }
        }
        out[m] = acc;
    }
}
static const int32_t KV_MXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
static inline float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static inline void mxfp4_row(const uint8_t *row, int64_t nb, const float *x, const float *xs, int64_t K,
                             const int mb, float *out) {
    (void)xs;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 17 * b;
            const float d = e8m0_half(blk[0]);
            for (int i = 0; i < 16; i++) {
                s += d * (float)KV_MXFP4[blk[1 + i] & 15] * x[m * K + 32 * b + i];
                s += d * (float)KV_MXFP4[blk[1 + i] >> 4] * x[m * K + 32 * b + 16 + i];
            }
        }
        out[m] = s;
    }
}
#endif

// ---------------- drivers: row groups over threads, K in chunks whose x fits L1, M in passes of MB_MAX ---------
typedef void (*row_fn)(const uint8_t *, int64_t, const float *, const float *, int64_t, int, float *);
#ifndef ROWS_PER_TASK
#define ROWS_PER_TASK 16
#endif
#define ROWS_PER_TASK_DOC     // rows sharing one x chunk (16 interleaved weight streams: prefetchers keep up)
#ifndef X_CHUNK_BYTES
#define X_CHUNK_BYTES 16384
#endif
#define X_CHUNK_DOC  // x bytes per chunk: half of a 32 KiB L1d, the rest for the weight stream

static void gemm_rows(row_fn fn, int64_t bs, int64_t bb, const float *x, int64_t M, int64_t K,
                      const uint8_t *raw, int64_t N, float *y, int nt) {
    const int64_t nb = K / bs, rb = nb * bb, ngroups = (N + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    // sums of x over each 32-wide sub-block (the K-quants' "min" term needs them), computed once per call
    float *xs = (float *)malloc(sizeof(float) * (size_t)(M * (K / 32) + 1));
    for (int64_t i = 0; i < M * (K / 32); i++) {
        float s = 0.f;
        for (int t = 0; t < 32; t++) s += x[32 * i + t];
        xs[i] = s;
    }
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t g = 0; g < ngroups; g++) {
        const int64_t n0 = g * ROWS_PER_TASK, rows = N - n0 < ROWS_PER_TASK ? N - n0 : ROWS_PER_TASK;
        for (int64_t m0 = 0; m0 < M; m0 += MB_MAX) {
            const int mb = (int)(M - m0 < MB_MAX ? M - m0 : MB_MAX);
            // blocks per K chunk: whole rows for one activation row (one sequential stream per row streams
            // 5-25% faster, measured; x, <= 70 KB, stays in L2), L1-sized x chunks when several rows share it
            int64_t kb = mb == 1 ? nb : X_CHUNK_BYTES / (4 * bs * mb);
            if (kb < 1) kb = 1;
            float part[ROWS_PER_TASK][MB_MAX] = {{0}}, out[MB_MAX];
            for (int64_t b0 = 0; b0 < nb; b0 += kb) {
                const int64_t cb = nb - b0 < kb ? nb - b0 : kb;
                for (int64_t r = 0; r < rows; r++) {
                    fn(raw + (n0 + r) * rb + b0 * bb, cb, x + m0 * K + b0 * bs, xs + m0 * (K / 32) + b0 * bs / 32,
                       K, mb, out);
                    for (int m = 0; m < mb; m++) part[r][m] += out[m];
                }
            }
            for (int64_t r = 0; r < rows; r++)
                for (int m = 0; m < mb; m++) y[(m0 + m) * N + n0 + r] = part[r][m];
        }
    }
    free(xs);
}

// Specialise the row kernels for each mb so gcc fully unrolls the m loop (and keeps acc in registers).
#define SPECIALISE(NAME)                                                                                      \
    static void NAME##_any(const uint8_t *r, int64_t nb, const float *x, const float *xs, int64_t K, int mb,   \
                           float *o) {                                                                         \
        switch (mb) {                                                                                          \
        case 1: NAME(r, nb, x, xs, K, 1, o); break;                                                            \
        case 2: NAME(r, nb, x, xs, K, 2, o); break;                                                            \
        case 3: NAME(r, nb, x, xs, K, 3, o); break;                                                            \
        default: NAME(r, nb, x, xs, K, 4, o); break;                                                           \
        }                                                                                                      \
    }
SPECIALISE(q8_0_row)
SPECIALISE(q4_k_row)
SPECIALISE(q6_k_row)
SPECIALISE(q5_k_row)
SPECIALISE(q4_0_row)
SPECIALISE(iq4_xs_row)
SPECIALISE(q2_k_row)
SPECIALISE(q3_k_row)
SPECIALISE(fp8_row)
SPECIALISE(int4_g128_row)
SPECIALISE(mxfp4_row)

void qlab_q8_0_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(q8_0_row_any, 32, 34, x, M, K, raw, N, y, nt);
}

void qlab_q4_k_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(q4_k_row_any, 256, 144, x, M, K, raw, N, y, nt);
}

void qlab_q5_k_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(q5_k_row_any, 256, 176, x, M, K, raw, N, y, nt);
}

void qlab_q4_0_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(q4_0_row_any, 32, 18, x, M, K, raw, N, y, nt);
}

void qlab_iq4_xs_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(iq4_xs_row_any, 256, 136, x, M, K, raw, N, y, nt);
}

void qlab_q2_k_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(q2_k_row_any, 256, 84, x, M, K, raw, N, y, nt);
}

void qlab_q3_k_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(q3_k_row_any, 256, 110, x, M, K, raw, N, y, nt);
}

void qlab_fp8_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(fp8_row_any, 32, 32, x, M, K, raw, N, y, nt);  // y still needs · 256·scale[n]
}

void qlab_int4_g128_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(int4_g128_row_any, 128, 68, x, M, K, raw, N, y, nt);
}

void qlab_mxfp4_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(mxfp4_row_any, 32, 17, x, M, K, raw, N, y, nt);
}

void qlab_q6_k_gemm(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_rows(q6_k_row_any, 256, 210, x, M, K, raw, N, y, nt);
}

// ---------------- tile dequantizers (large M: decode a bounded tile of rows to fp32, then a BLAS matmul) ------
void qlab_q8_0_dequant(const uint8_t *raw, int64_t rows, int64_t K, float *w, int nt) {
    const int64_t nb = K / 32;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows * nb; r++) {
        const uint8_t *blk = raw + 34 * r;
        const float d = h2f(blk);
        for (int i = 0; i < 32; i++) w[32 * r + i] = (float)((const int8_t *)(blk + 2))[i] * d;
    }
}

void qlab_q4_k_dequant(const uint8_t *raw, int64_t rows, int64_t K, float *w, int nt) {
    const int64_t nb = K / 256;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows * nb; r++) {
        const uint8_t *blk = raw + 144 * r;
        float dsc[8], dm[8];
        q4_k_scales(blk + 4, h2f(blk), h2f(blk + 2), dsc, dm);
        float *o = w + 256 * r;
        for (int c = 0; c < 4; c++)
            for (int i = 0; i < 32; i++) {
                o[64 * c + i] = dsc[2 * c] * (float)(blk[16 + 32 * c + i] & 15) - dm[2 * c];
                o[64 * c + 32 + i] = dsc[2 * c + 1] * (float)(blk[16 + 32 * c + i] >> 4) - dm[2 * c + 1];
            }
    }
}
