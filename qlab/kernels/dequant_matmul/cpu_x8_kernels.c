// Row-interleaved ("x8") Q4_K and Q6_K for the CPU decode GEMV (impl `cpu_int8`, weights with N % 8 == 0).
//
// Why a second layout: in ggml's layout every 256-weight block of one row carries its own scales, so a GEMV
// that walks one row at a time decodes scales, shuffles them into place and sums horizontally per block and
// row; on one Zen 4 core that made Q4_K / Q6_K compute-bound at ~15-19 / ~12-15 GB/s, below the ~21 GB/s one core
// can stream. Here the same block of 8 consecutive rows is stored together, transposed so that each 32-bit
// lane of a vector belongs to one row: one broadcast of 4 activations meets 8 rows' 4 weights in a single
// dpbusd, the 8 rows' scales are one vector, and each vector accumulator already holds the 8 outputs. It is
// the idea of llama.cpp's CPU "repack" buffers (block_q4_Kx8); layouts and code here are qlab's own. The
// numbers are exactly cpu_int8's: the same integer sums, regrouped.
//
// One group = 8 rows x 256 weights (one K-quant block of each row):
//   Q4_K, 1184 B: d[8], dmin[8] fp16 | sc and mn, 6-bit values as u8, pair-interleaved: byte 32 + 16p + 2r + e
//                 is row r's scale of sub-block 2p + e (mins likewise at 96) | qs at 160 + 128j + 32t + 4r + i:
//                 row r's element 32j + 8t + i in the low nibble, 32j + 8t + 4 + i in the high one
//   Q6_K, 1680 B: d[8] fp16 | sc int8 at 16 + 16p + 2r + e (sub-block 2p + e of row r) | per sub-block j of
//                 16 weights, 96 B at 144 + 96j: three vectors at +32c (c = 0, 1, 2) whose byte 4r + i holds row
//                 r's 6-bit element 16j + 4c + i in bits 0-5 and, in bits 6-7, bits 2c and 2c + 1 of element
//                 16j + 12 + i. So three weight vectors are one AND each and the fourth is gathered from the
//                 three top bit pairs (10 ops per 128 weights, against 17 for ggml's nibble + 2-bit split)
// Groups are stored group-row major ([N / 8][K / 256]), so one thread reads one linear stream. The layout is
// 2.8% larger than ggml's for Q4_K (its 6-bit scales stored as bytes) and the same size for Q6_K.
// No software prefetch: on a linear stream the hardware prefetcher does better alone. cpu_common.h's PREFETCH
// (non-temporal, 1 KB ahead) cost 5-15% here (1 and 2 threads, 250 MB matrices, 5 alternating runs: Q4_K
// 19.8 -> 25.7, Q6_K 19.6 -> 22.6 GB/s on one thread); 4 KB ahead or prefetcht1 were level with none.

#include "cpu_int8_quant.h"

#define X8_Q4_K 1184
#define X8_Q6_K 1680
#ifndef GROUPS_PER_TASK
// 256 rows per OpenMP task: each task restarts the hardware prefetcher's stream, and 2 groups (16 rows, ~67 KB of
// Q6_K at K = 5120) a task streamed 10-15% slower on 2 threads (head 27.3 vs 31.3, ffn_gate 26.4 vs 32.3 GB/s)
#define GROUPS_PER_TASK 32
#endif

// ---------------- repack: ggml rows -> groups (once per weight, when it is first used) ------------------------
static void q4_k_block_to_x8(const uint8_t *src, int r, uint8_t *o) {
    memcpy(o + 2 * r, src, 2);
    memcpy(o + 16 + 2 * r, src + 2, 2);
    uint64_t sc, mn;
    k4_scales(src + 4, &sc, &mn);
    for (int j = 0; j < 8; j++) {
        o[32 + 16 * (j / 2) + 2 * r + j % 2] = (uint8_t)(sc >> (8 * j));
        o[96 + 16 * (j / 2) + 2 * r + j % 2] = (uint8_t)(mn >> (8 * j));
    }
    for (int j = 0; j < 8; j++)
        for (int e = 0; e < 32; e++) {
            const uint8_t byte = src[16 + 32 * (j / 2) + e];
            const uint8_t q = (j % 2) ? byte >> 4 : byte & 15;
            uint8_t *p = o + 160 + 128 * j + 32 * (e / 8) + 4 * r + e % 4;
            *p = (e % 8) < 4 ? (uint8_t)((*p & 0xf0) | q) : (uint8_t)((*p & 0x0f) | (q << 4));
        }
}

static inline int q6_k_value(const uint8_t *src, int n) {  // element n of a ggml Q6_K block, 0..63
    const int h = n / 128, t = (n % 128) / 32, i = n % 32;
    const uint8_t lo = src[64 * h + 32 * (t % 2) + i], hi = src[128 + 32 * h + i];
    return ((t < 2) ? (lo & 15) : (lo >> 4)) | (((hi >> (2 * t)) & 3) << 4);
}

static void q6_k_block_to_x8(const uint8_t *src, int r, uint8_t *o) {
    memcpy(o + 2 * r, src + 208, 2);
    for (int j = 0; j < 16; j++) o[16 + 16 * (j / 2) + 2 * r + j % 2] = src[192 + j];
    for (int j = 0; j < 16; j++)
        for (int i = 0; i < 4; i++) {
            const int top = q6_k_value(src, 16 * j + 12 + i);
            for (int c = 0; c < 3; c++)
                o[144 + 96 * j + 32 * c + 4 * r + i] =
                    (uint8_t)(q6_k_value(src, 16 * j + 4 * c + i) | (((top >> (2 * c)) & 3) << 6));
        }
}

typedef void (*block_fn)(const uint8_t *, int, uint8_t *);

static void repack(block_fn fn, int64_t gbytes, int64_t bb, const uint8_t *src, int64_t N, int64_t K, uint8_t *dst,
                   int nt) {
    const int64_t nb = K / 256, row_bytes = nb * bb;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t g = 0; g < N / 8; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = dst + (g * nb + b) * gbytes;
            memset(o, 0, (size_t)gbytes);
            for (int r = 0; r < 8; r++) fn(src + (8 * g + r) * row_bytes + b * bb, r, o);
        }
}
void qlab_q4_k_repack_x8(const uint8_t *raw, int64_t N, int64_t K, uint8_t *out, int nt) {
    repack(q4_k_block_to_x8, X8_Q4_K, 144, raw, N, K, out, nt);
}
void qlab_q6_k_repack_x8(const uint8_t *raw, int64_t N, int64_t K, uint8_t *out, int nt) {
    repack(q6_k_block_to_x8, X8_Q6_K, 210, raw, N, K, out, nt);
}
// ---------------- the GEMV: 8 rows' outputs per vector, every 4 activations one dpbusd ------------------------
#if defined(__AVX2__) && defined(__FMA__)
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPBUSD(acc, a, b) _mm256_dpbusd_epi32(acc, a, b)
#define DPWSSD(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)
#elif defined(__AVXVNNI__)
#define DPBUSD(acc, a, b) _mm256_dpbusd_avx_epi32(acc, a, b)
#define DPWSSD(acc, a, b) _mm256_dpwssd_avx_epi32(acc, a, b)
#else  // u8 weights <= 63, so the s16 pair sums of pmaddubsw cannot saturate
#define DPBUSD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)))
#define DPWSSD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#endif
#define LOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define BCAST4(p) _mm256_set1_epi32(*(const int32_t *)(p))  // 4 int8 activations (or 2 int16) to every row lane
#define FP16X8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#if defined(__AVX512VL__)
#define OR3(a, b, c) _mm256_ternarylogic_epi32(a, b, c, 0xfe)
#else
#define OR3(a, b, c) _mm256_or_si256(_mm256_or_si256(a, b), c)
#endif

static inline __attribute__((always_inline)) void
q4_k_x8(const uint8_t *grp, int64_t nb, const xblk256 *x, const int mb, float *y, int64_t N) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), lo16 = _mm256_set1_epi32(0xffff);
    __m256 acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, grp += X8_Q4_K) {
        __m256i isum[MB_MAX], imin[MB_MAX];
        for (int m = 0; m < mb; m++) isum[m] = imin[m] = _mm256_setzero_si256();
        for (int p = 0; p < 4; p++) {  // sub-blocks 2p, 2p + 1
            const __m256i sc = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(grp + 32 + 16 * p)));
            const __m256i mn = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(grp + 96 + 16 * p)));
            const __m256i s[2] = {_mm256_and_si256(sc, lo16), _mm256_srli_epi32(sc, 16)};
            for (int e = 0; e < 2; e++) {
                const int j = 2 * p + e;
                const uint8_t *qs = grp + 160 + 128 * j;
                __m256i w[8];
                for (int t = 0; t < 4; t++) {
                    const __m256i v = LOAD(qs + 32 * t);
                    w[2 * t] = _mm256_and_si256(v, m4);
                    w[2 * t + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                }
                for (int m = 0; m < mb; m++) {
                    const int8_t *xq = x[m * nb + b].q + 32 * j;
                    __m256i a0 = DPBUSD(_mm256_setzero_si256(), w[0], BCAST4(xq));  // two chains for the latency
                    __m256i a1 = DPBUSD(_mm256_setzero_si256(), w[1], BCAST4(xq + 4));
                    for (int k = 1; k < 4; k++) {
                        a0 = DPBUSD(a0, w[2 * k], BCAST4(xq + 8 * k));
                        a1 = DPBUSD(a1, w[2 * k + 1], BCAST4(xq + 8 * k + 4));
                    }
                    isum[m] = _mm256_add_epi32(isum[m], _mm256_mullo_epi32(_mm256_add_epi32(a0, a1), s[e]));
                }
            }
            for (int m = 0; m < mb; m++) imin[m] = DPWSSD(imin[m], mn, BCAST4(x[m * nb + b].bsum32 + 2 * p));
        }
        const __m256 d = FP16X8(grp), dmin = FP16X8(grp + 16);
        for (int m = 0; m < mb; m++) {
            const __m256 xd = _mm256_set1_ps(x[m * nb + b].d);
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[m]), _mm256_mul_ps(d, xd), acc[m]);
            acc[m] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin[m]), _mm256_mul_ps(dmin, xd), acc[m]);
        }
    }
    for (int m = 0; m < mb; m++) _mm256_storeu_ps(y + m * N, acc[m]);
}

static inline __attribute__((always_inline)) void
q6_k_x8(const uint8_t *grp, int64_t nb, const xblk256 *x, const int mb, float *y, int64_t N) {
    const __m256i m3f = _mm256_set1_epi8(0x3f);
    __m256 acc[MB_MAX];
    for (int m = 0; m < mb; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, grp += X8_Q6_K) {
        __m256i isum[MB_MAX], off[MB_MAX];
        for (int m = 0; m < mb; m++) isum[m] = off[m] = _mm256_setzero_si256();
        for (int p = 0; p < 8; p++) {  // sub-blocks 2p, 2p + 1 (16 weights each)
            const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(grp + 16 + 16 * p)));
            const __m256i s[2] = {_mm256_srai_epi32(_mm256_slli_epi32(sc, 16), 16), _mm256_srai_epi32(sc, 16)};
            for (int e = 0; e < 2; e++) {
                const int j = 2 * p + e;
                const uint8_t *q = grp + 144 + 96 * j;
                const __m256i v0 = LOAD(q), v1 = LOAD(q + 32), v2 = LOAD(q + 64);
                const __m256i w0 = _mm256_and_si256(v0, m3f), w1 = _mm256_and_si256(v1, m3f);
                const __m256i w2 = _mm256_and_si256(v2, m3f);
                const __m256i t0 = _mm256_srli_epi16(_mm256_andnot_si256(m3f, v0), 6);  // masked first: clean bytes
                const __m256i t1 = _mm256_srli_epi16(_mm256_andnot_si256(m3f, v1), 4);
                const __m256i t2 = _mm256_srli_epi16(_mm256_andnot_si256(m3f, v2), 2);
                const __m256i w3 = OR3(t0, t1, t2);
                for (int m = 0; m < mb; m++) {
                    const int8_t *xq = x[m * nb + b].q + 16 * j;
                    __m256i a0 = DPBUSD(_mm256_setzero_si256(), w0, BCAST4(xq));
                    __m256i a1 = DPBUSD(_mm256_setzero_si256(), w1, BCAST4(xq + 4));
                    a0 = DPBUSD(a0, w2, BCAST4(xq + 8));
                    a1 = DPBUSD(a1, w3, BCAST4(xq + 12));
                    isum[m] = _mm256_add_epi32(isum[m], _mm256_mullo_epi32(_mm256_add_epi32(a0, a1), s[e]));
                }
            }
            for (int m = 0; m < mb; m++) off[m] = DPWSSD(off[m], sc, BCAST4(x[m * nb + b].bsum + 2 * p));
        }
        const __m256 d = FP16X8(grp);
        for (int m = 0; m < mb; m++) {  // q − 32 per weight: Σ sc·(q·x) − 32 Σ sc·Σx
            const __m256i tot = _mm256_sub_epi32(isum[m], _mm256_slli_epi32(off[m], 5));
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), _mm256_mul_ps(d, _mm256_set1_ps(x[m * nb + b].d)), acc[m]);
        }
    }
    for (int m = 0; m < mb; m++) _mm256_storeu_ps(y + m * N, acc[m]);
}

#else
// ---------------- portable C: the same sums from the same layout, element by element --------------------------
static inline void q4_k_x8(const uint8_t *grp, int64_t nb, const xblk256 *x, const int mb, float *y, int64_t N) {
    for (int m = 0; m < mb; m++)
        for (int r = 0; r < 8; r++) {
            float s = 0.f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *o = grp + b * X8_Q4_K;
                const xblk256 *xb = x + m * nb + b;
                int32_t isum = 0, imin = 0;
                for (int j = 0; j < 8; j++) {
                    int32_t dot = 0;
                    for (int e = 0; e < 32; e++) {
                        const uint8_t byte = o[160 + 128 * j + 32 * (e / 8) + 4 * r + e % 4];
                        dot += ((e % 8) < 4 ? byte & 15 : byte >> 4) * xb->q[32 * j + e];
                    }
                    isum += o[32 + 16 * (j / 2) + 2 * r + j % 2] * dot;
                    imin += o[96 + 16 * (j / 2) + 2 * r + j % 2] * xb->bsum32[j];
                }
                s += (float)isum * (h2f(o + 2 * r) * xb->d) - (float)imin * (h2f(o + 16 + 2 * r) * xb->d);
            }
            y[m * N + r] = s;
        }
}
static inline void q6_k_x8(const uint8_t *grp, int64_t nb, const xblk256 *x, const int mb, float *y, int64_t N) {
    for (int m = 0; m < mb; m++)
        for (int r = 0; r < 8; r++) {
            float s = 0.f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *o = grp + b * X8_Q6_K;
                const xblk256 *xb = x + m * nb + b;
                int32_t isum = 0;
                for (int j = 0; j < 16; j++) {
                    int32_t dot = 0;
                    for (int e = 0; e < 16; e++) {
                        const uint8_t *v = o + 144 + 96 * j + 4 * r + e % 4;
                        const int q = e < 12 ? v[32 * (e / 4)] & 63 : (v[0] >> 6) | ((v[32] >> 6) << 2) | ((v[64] >> 6) << 4);
                        dot += (q - 32) * xb->q[16 * j + e];
                    }
                    isum += (int8_t)o[16 + 16 * (j / 2) + 2 * r + j % 2] * dot;
                }
                s += (float)isum * (h2f(o + 2 * r) * xb->d);
            }
            y[m * N + r] = s;
        }
}
#endif

// ---------------- driver: x quantized once, tasks of GROUPS_PER_TASK groups over threads, M in passes ---------
typedef void (*group_fn)(const uint8_t *, int64_t, const xblk256 *, int, float *, int64_t);
#define SPECIALISE(NAME)                                                                                      \
    static void NAME##_any(const uint8_t *g, int64_t nb, const xblk256 *x, int mb, float *y, int64_t N) {    \
        switch (mb) {                                                                                          \
        case 1: NAME(g, nb, x, 1, y, N); break;                                                                \
        case 2: NAME(g, nb, x, 2, y, N); break;                                                                \
        case 3: NAME(g, nb, x, 3, y, N); break;                                                                \
        default: NAME(g, nb, x, 4, y, N); break;                                                               \
        }                                                                                                      \
    }
SPECIALISE(q4_k_x8)
SPECIALISE(q6_k_x8)

static void gemm_x8(group_fn fn, int64_t gbytes, const float *x, int64_t M, int64_t K, const uint8_t *x8, int64_t N,
                    float *y, int nt) {
    const int64_t nb = K / 256, ngroups = N / 8, ntasks = (ngroups + GROUPS_PER_TASK - 1) / GROUPS_PER_TASK;
    xblk256 *xq = (xblk256 *)malloc(sizeof(xblk256) * (size_t)(M * nb));
    for (int64_t m = 0; m < M; m++) quantize_x256(x + m * K, nb, xq + m * nb);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t task = 0; task < ntasks; task++)
        for (int64_t g = task * GROUPS_PER_TASK; g < ngroups && g < (task + 1) * GROUPS_PER_TASK; g++)
            for (int64_t m0 = 0; m0 < M; m0 += MB_MAX)
                fn(x8 + g * nb * gbytes, nb, xq + m0 * nb, (int)(M - m0 < MB_MAX ? M - m0 : MB_MAX), y + m0 * N + 8 * g,
                   N);
    free(xq);
}

void qlab_q4_k_x8_gemm_int8(const float *x, int64_t M, int64_t K, const uint8_t *x8, int64_t N, float *y, int nt) {
    gemm_x8(q4_k_x8_any, X8_Q4_K, x, M, K, x8, N, y, nt);
}
void qlab_q6_k_x8_gemm_int8(const float *x, int64_t M, int64_t K, const uint8_t *x8, int64_t N, float *y, int nt) {
    gemm_x8(q6_k_x8_any, X8_Q6_K, x, M, K, x8, N, y, nt);
}

// ---------------- several x8 matrices that share their input, in one call ---------------------------------------
// A decode step multiplies one activation by several matrices in a row (a DeltaNet layer's qkv, gate, beta and
// alpha; attention's q, k, v; the FFN's gate and up). One call quantizes x once and spreads all the matrices'
// row groups over one parallel region, instead of a fork/join and a Python round trip each, and the tiny ones
// (beta, alpha: 48 rows) no longer run alone on one thread. fmts[i]: 0 = Q4_K, 1 = Q6_K; y[i] is [M, N[i]].
void qlab_x8_gemm_int8_multi(const float *x, int64_t M, int64_t K, int n, const int32_t *fmts,
                             const uint8_t *const *w, const int64_t *N, float *const *y, int nt) {
    const int64_t nb = K / 256;
    int64_t first[9] = {0};  // first task of each matrix (n <= 8)
    for (int i = 0; i < n && i < 8; i++) first[i + 1] = first[i] + (N[i] / 8 + GROUPS_PER_TASK - 1) / GROUPS_PER_TASK;
    xblk256 *xq = (xblk256 *)malloc(sizeof(xblk256) * (size_t)(M * nb));
    for (int64_t m = 0; m < M; m++) quantize_x256(x + m * K, nb, xq + m * nb);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t task = 0; task < first[n]; task++) {
        int i = 0;
        while (task >= first[i + 1]) i++;
        const group_fn fn = fmts[i] ? q6_k_x8_any : q4_k_x8_any;
        const int64_t gbytes = fmts[i] ? X8_Q6_K : X8_Q4_K, ngroups = N[i] / 8, g0 = (task - first[i]) * GROUPS_PER_TASK;
        for (int64_t g = g0; g < ngroups && g < g0 + GROUPS_PER_TASK; g++)
            for (int64_t m0 = 0; m0 < M; m0 += MB_MAX)
                fn(w[i] + g * nb * gbytes, nb, xq + m0 * nb, (int)(M - m0 < MB_MAX ? M - m0 : MB_MAX),
                   y[i] + m0 * N[i] + 8 * g, N[i]);
    }
    free(xq);
}
