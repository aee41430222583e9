// Integer-dot GEMV/GEMM for small M on the CPU (impl `cpu_int8`): llama.cpp's numerics, qlab's own code.
//
// The activations are quantized to int8 per block first, as llama.cpp's CPU backend does (Q8_K-like blocks of
// 256 for the K-quants, Q8_0-like blocks of 32 for Q8_0), and then every 32 weights x 32 activations is an
// integer dot product: pmaddubsw (u8 x s8 -> s16 pairs), then pmaddwd by the sub-block scale (or their VNNI
// forms). Against torch_cpu's fp32 decode that is about half the instructions per weight for the same bytes;
// the price is the activation rounding (relative error ~0.5%, the same as llama.cpp's), which is why this is a
// separate impl and torch_cpu stays fp32-exact. The activation blocks are in cpu_int8_quant.h.
//
// Block layouts are ggml's (ggml-common.h); see cpu_kernels.c for the fp32 versions of the same decodes.

#include "cpu_int8_quant.h"

#if defined(__AVX2__) && defined(__FMA__)
// ---------------- x86: 256-bit integer dots (Zen 4 runs 512-bit ops as two 256-bit halves anyway) -------------
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPWSSD(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)
#define DPBUSD(acc, a, b) _mm256_dpbusd_epi32(acc, a, b)
#elif defined(__AVXVNNI__)
#define DPWSSD(acc, a, b) _mm256_dpwssd_avx_epi32(acc, a, b)
#define DPBUSD(acc, a, b) _mm256_dpbusd_avx_epi32(acc, a, b)
#else
#define DPWSSD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#define DPBUSD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)))
#endif
#define LOAD(p) _mm256_loadu_si256((const __m256i *)(p))

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- Q8_0 x Q8_0: |w| as u8 against x with w's sign (psignb), two accumulators for the FMA latency ----
static inline __attribute__((always_inline)) void
q8_0_row(const uint8_t *row, int64_t nb, const void *xv, const int mb, float *out) {
    const xblk32 *x = (const xblk32 *)xv;
    __m256 acc[MB_MAX][2];
    for (int m = 0; m < mb; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        for (int u = 0; u < 2; u++) {
            const uint8_t *blk = row + 34 * (b + u);
            PREFETCH(blk);
            const __m256i w = LOAD(blk + 2), aw = _mm256_sign_epi8(w, w);
            const float dw = h2f(blk);
            for (int m = 0; m < mb; m++) {
                const xblk32 *xb = x + m * nb + b + u;
                const __m256i dot = DPBUSD(_mm256_setzero_si256(), aw, _mm256_sign_epi8(LOAD(xb->q), w));
                acc[m][u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * xb->d), acc[m][u]);
            }
        }
    }
    for (; b < nb; b++) {
        const uint8_t *blk = row + 34 * b;
        const __m256i w = LOAD(blk + 2), aw = _mm256_sign_epi8(w, w);
        const float dw = h2f(blk);
        for (int m = 0; m < mb; m++) {
            const xblk32 *xb = x + m * nb + b;
            const __m256i dot = DPBUSD(_mm256_setzero_si256(), aw, _mm256_sign_epi8(LOAD(xb->q), w));
            acc[m][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * xb->d), acc[m][0]);
        }
    }
    for (int m = 0; m < mb; m++) out[m] = hsum(_mm256_add_ps(acc[m][0], acc[m][1]));
}

// byte pairs (2j, 2j+1) repeated across a 128-bit lane: picks int16 lane j of a register broadcast to both lanes
static inline __m256i pick16(__m256i v, int j) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)((2 * j) | ((2 * j + 1) << 8))));
}

// ---- Q4_K / Q5_K x Q8_K: sum_j d·sc_j·(q·x)_j − dmin·m_j·(Σx)_j, every term an integer until the block's end ----
static inline __attribute__((always_inline)) void
k45_row(const uint8_t *row, int64_t nb, const void *xv, const int mb, float *out, const int five) {
    const xblk256 *x = (const xblk256 *)xv;
    const int64_t bb = five ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m256 acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + bb * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        PREFETCH(blk + 128);
        uint64_t sc64, mn64;
        k4_scales(blk + 4, &sc64, &mn64);
        const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc64)));
        const __m128i mnb = _mm_cvtsi64_si128((long long)mn64);
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mnb, mnb));  // m_j for 16-sums 2j, 2j+1
        const float d = h2f(blk), dmin = h2f(blk + 2);
        const uint8_t *qs = blk + (five ? 48 : 16);
        const __m256i hb = five ? LOAD(blk + 16) : _mm256_setzero_si256();
        __m256i lo[4], hi[4];
        for (int c = 0; c < 4; c++) {  // 32 bytes: sub-block 2c in the low nibbles, 2c+1 in the high ones
            const __m256i q = LOAD(qs + 32 * c);
            lo[c] = _mm256_and_si256(q, m4);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (five) {  // the 5th bit of sub-block j is bit j of qh[i]
                lo[c] = _mm256_or_si256(lo[c], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
                hi[c] = _mm256_or_si256(hi[c],
                                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4));
            }
        }
        for (int m = 0; m < mb; m++) {
            const xblk256 *xb = x + m * nb + b;
            __m256i part[4];  // four short chains, not one of eight dependent dot-accumulates (~5 cycles each)
            for (int c = 0; c < 4; c++) {
                part[c] = DPWSSD(_mm256_setzero_si256(), _mm256_maddubs_epi16(lo[c], LOAD(xb->q + 64 * c)),
                                 pick16(sc16, 2 * c));
                part[c] = DPWSSD(part[c], _mm256_maddubs_epi16(hi[c], LOAD(xb->q + 64 * c + 32)), pick16(sc16, 2 * c + 1));
            }
            const __m256i isum = _mm256_add_epi32(_mm256_add_epi32(part[0], part[1]), _mm256_add_epi32(part[2], part[3]));
            const __m256i imin = _mm256_madd_epi16(mn16, LOAD(xb->bsum));
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * xb->d), acc[m]);
            acc[m] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_set1_ps(dmin * xb->d), acc[m]);
        }
    }
    for (int m = 0; m < mb; m++) out[m] = hsum(acc[m]);
}
static inline __attribute__((always_inline)) void
q4_k_row(const uint8_t *row, int64_t nb, const void *x, const int mb, float *out) { k45_row(row, nb, x, mb, out, 0); }
static inline __attribute__((always_inline)) void
q5_k_row(const uint8_t *row, int64_t nb, const void *x, const int mb, float *out) { k45_row(row, nb, x, mb, out, 1); }

// ---- Q6_K x Q8_K: q in 0..63 as u8, the −32 offset folded in as −32·Σ_j sc_j·bsum_j ----
static inline __attribute__((always_inline)) void
q6_k_row(const uint8_t *row, int64_t nb, const void *xv, const int mb, float *out) {
    const xblk256 *x = (const xblk256 *)xv;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + 210 * b;
        PREFETCH(blk);
        PREFETCH(blk + 64);
        PREFETCH(blk + 128);
        PREFETCH(blk + 192);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)(blk + 192));
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        const float d = h2f(blk + 208);
        __m256i q[8], s[8];  // group 4h + t: elements 128h + 32t .. +31, sub-blocks 8h + 2t and 8h + 2t + 1
        for (int h = 0; h < 2; h++) {
            const __m256i a = LOAD(blk + 64 * h), c = LOAD(blk + 64 * h + 32), hb = LOAD(blk + 128 + 32 * h);
            q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), _mm256_and_si256(hb, m30));
            q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
        }
        for (int g = 0; g < 8; g++) {  // sc_j in the low 128-bit lane, sc_{j+1} in the high one (16 elements each)
            const int j = 2 * g;
            const __m128i pick = _mm_set_epi64x(0x0101010101010101LL * (j + 1), 0x0101010101010101LL * j);
            s[g] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
        }
        for (int m = 0; m < mb; m++) {
            const xblk256 *xb = x + m * nb + b;
            __m256i part[4];  // four short chains of dot-accumulates, as in k45_row
            for (int g = 0; g < 4; g++) {
                part[g] = DPWSSD(_mm256_setzero_si256(), _mm256_maddubs_epi16(q[g], LOAD(xb->q + 32 * g)), s[g]);
                part[g] = DPWSSD(part[g], _mm256_maddubs_epi16(q[g + 4], LOAD(xb->q + 32 * (g + 4))), s[g + 4]);
            }
            const __m256i off = _mm256_madd_epi16(sc16, LOAD(xb->bsum));
            const __m256i isum = _mm256_sub_epi32(
                _mm256_add_epi32(_mm256_add_epi32(part[0], part[1]), _mm256_add_epi32(part[2], part[3])),
                _mm256_slli_epi32(off, 5));
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * xb->d), acc[m]);
        }
    }
    for (int m = 0; m < mb; m++) out[m] = hsum(acc[m]);
}

#else
// ---------------- portable C (other CPUs): the same integer arithmetic, element by element -------------------
static inline void q8_0_row(const uint8_t *row, int64_t nb, const void *xv, const int mb, float *out) {
    const xblk32 *x = (const xblk32 *)xv;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 34 * b;
            const xblk32 *xb = x + m * nb + b;
            int32_t dot = 0;
            for (int i = 0; i < 32; i++) dot += (int32_t)(int8_t)blk[2 + i] * xb->q[i];
            s += (float)dot * (h2f(blk) * xb->d);
        }
        out[m] = s;
    }
}
static inline void k45_row(const uint8_t *row, int64_t nb, const void *xv, const int mb, float *out, const int five) {
    const xblk256 *x = (const xblk256 *)xv;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + (five ? 176 : 144) * b, *qs = blk + (five ? 48 : 16);
            const xblk256 *xb = x + m * nb + b;
            uint64_t sc64, mn64;
            uint8_t sc[8], mn[8];
            k4_scales(blk + 4, &sc64, &mn64);
            memcpy(sc, &sc64, 8); memcpy(mn, &mn64, 8);  // byte j: sub-block j (little-endian)
            int32_t isum = 0, imin = 0;
            for (int j = 0; j < 8; j++) {
                int32_t dot = 0;
                for (int i = 0; i < 32; i++) {
                    const uint8_t byte = qs[32 * (j / 2) + i];
                    int q = (j % 2) ? (byte >> 4) : (byte & 15);
                    if (five) q |= ((blk[16 + i] >> j) & 1) << 4;
                    dot += q * xb->q[32 * j + i];
                }
                isum += sc[j] * dot;
                imin += mn[j] * (xb->bsum[2 * j] + xb->bsum[2 * j + 1]);
            }
            s += (float)isum * (h2f(blk) * xb->d) - (float)imin * (h2f(blk + 2) * xb->d);
        }
        out[m] = s;
    }
}
static inline void q4_k_row(const uint8_t *row, int64_t nb, const void *x, const int mb, float *out) {
    k45_row(row, nb, x, mb, out, 0);
}
static inline void q5_k_row(const uint8_t *row, int64_t nb, const void *x, const int mb, float *out) {
    k45_row(row, nb, x, mb, out, 1);
}
static inline void q6_k_row(const uint8_t *row, int64_t nb, const void *xv, const int mb, float *out) {
    const xblk256 *x = (const xblk256 *)xv;
    for (int m = 0; m < mb; m++) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 210 * b;
            const xblk256 *xb = x + m * nb + b;
            int32_t isum = 0;
            for (int p = 0; p < 256; p++) {
                const int h = p / 128, r = p % 128, t = r / 32, i = r % 32;
                const uint8_t lo = blk[64 * h + 32 * (t % 2) + i], hi = blk[128 + 32 * h + i];
                const int q = (((t < 2) ? (lo & 15) : (lo >> 4)) | (((hi >> (2 * t)) & 3) << 4)) - 32;
                isum += (int8_t)blk[192 + p / 16] * q * xb->q[p];
            }
            s += (float)isum * (h2f(blk + 208) * xb->d);
        }
        out[m] = s;
    }
}
#endif

// ---------------- driver: x quantized once per call, groups of rows over threads, M in passes of MB_MAX ----------
typedef void (*row_fn)(const uint8_t *, int64_t, const void *, int, float *);
#ifndef ROWS_PER_TASK
// each task restarts the hardware prefetcher's stream: 256 rows a task against 16 streamed the Q8_0 slice's head,
// ffn_gate and attn_qkv at 37.6 / 37.9 / 37.4 GB/s instead of 30.2 / 30.3 / 31.1 (2 threads, median of 5)
#define ROWS_PER_TASK 256
#endif

#define SPECIALISE(NAME)                                                                                      \
    static void NAME##_any(const uint8_t *r, int64_t nb, const void *x, int mb, float *o) {                  \
        switch (mb) {                                                                                          \
        case 1: NAME(r, nb, x, 1, o); break;                                                                   \
        case 2: NAME(r, nb, x, 2, o); break;                                                                   \
        case 3: NAME(r, nb, x, 3, o); break;                                                                   \
        default: NAME(r, nb, x, 4, o); break;                                                                  \
        }                                                                                                      \
    }
SPECIALISE(q8_0_row)
SPECIALISE(q4_k_row)
SPECIALISE(q5_k_row)
SPECIALISE(q6_k_row)

static void gemm_int8(row_fn fn, int64_t bs, int64_t bb, const float *x, int64_t M, int64_t K, const uint8_t *raw,
                      int64_t N, float *y, int nt) {
    const int64_t nb = K / bs, rb = nb * bb, ngroups = (N + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    const size_t xbytes = bs == 256 ? sizeof(xblk256) : sizeof(xblk32);
    char *xq = (char *)malloc(xbytes * (size_t)(M * nb));
    for (int64_t m = 0; m < M; m++) {
        if (bs == 256) quantize_x256(x + m * K, nb, (xblk256 *)xq + m * nb);
        else quantize_x32(x + m * K, nb, (xblk32 *)xq + m * nb);
    }
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t g = 0; g < ngroups; g++) {
        const int64_t n0 = g * ROWS_PER_TASK, rows = N - n0 < ROWS_PER_TASK ? N - n0 : ROWS_PER_TASK;
        for (int64_t m0 = 0; m0 < M; m0 += MB_MAX) {
            const int mb = (int)(M - m0 < MB_MAX ? M - m0 : MB_MAX);
            float out[MB_MAX];
            for (int64_t r = 0; r < rows; r++) {
                fn(raw + (n0 + r) * rb, nb, xq + xbytes * (size_t)(m0 * nb), mb, out);
                for (int m = 0; m < mb; m++) y[(m0 + m) * N + n0 + r] = out[m];
            }
        }
    }
    free(xq);
}

void qlab_q8_0_gemm_int8(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_int8(q8_0_row_any, 32, 34, x, M, K, raw, N, y, nt);
}
void qlab_q4_k_gemm_int8(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_int8(q4_k_row_any, 256, 144, x, M, K, raw, N, y, nt);
}
void qlab_q5_k_gemm_int8(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_int8(q5_k_row_any, 256, 176, x, M, K, raw, N, y, nt);
}
void qlab_q6_k_gemm_int8(const float *x, int64_t M, int64_t K, const uint8_t *raw, int64_t N, float *y, int nt) {
    gemm_int8(q6_k_row_any, 256, 210, x, M, K, raw, N, y, nt);
}
