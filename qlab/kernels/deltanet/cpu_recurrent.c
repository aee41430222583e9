// The gated delta rule stepped in time on the CPU (impl `recurrent_cpu`), fp32, the state updated in place.
//
// Per head and step, with the state S [K, V] before the step, d = exp(g), in llama.cpp's order of operations
// (ggml's CPU GATED_DELTA_NET op, which llama.cpp runs for prefill and decode alike):
//     S ← d S;   delta = beta (v − Sᵀk);   S ← S + k deltaᵀ;   o = scale · Sᵀq
// Each product reads the state as rounded after the step before it, so qlab's roundings are llama.cpp's up to the
// summation order of the dot products. Each tile of VT columns (K x VT floats,
// 16 KiB: it stays in L1) is swept twice: Sᵀk of the decayed state (read only), then the decay and rank-1 update
// written with Sᵀq, so the state crosses the memory bus once each way. Heads go over OpenMP threads.

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../cpu_math.h"

#define VT 32  // state columns per tile

// a·b + c fused where the CPU has FMA, as ggml's SIMD dot and vec_mad are (-std=c11 contracts nothing)
#if defined(__FMA__) || defined(__aarch64__)
#define MAD(a, b, c) fmaf(a, b, c)
#else
#define MAD(a, b, c) ((a) * (b) + (c))
#endif

// ggml's f32 dot product (ggml_vec_dot_f32) keeps LANES partial sums, element i in lane i % LANES (4 SIMD
// accumulators of 16 floats on AVX-512, of 8 on AVX2), each a chain of fused multiply-adds, then adds the lanes in a
// fixed tree. Summing Sᵀk and Sᵀq the same way gives llama.cpp's bits, where a sum in row order differs from them
// by ~2e-7 relative in most outputs (and each difference can flip an int8 rounding of ssm_out's input). LANES 0:
// row order (no FMA/AVX2 here: ggml's SSE and scalar paths sum otherwise anyway).
#if defined(__AVX512F__)
#define LANES 64
#elif defined(__AVX2__) && defined(__FMA__)
#define LANES 32
#else
#define LANES 0
#endif

#if LANES
// P [LANES][VT] -> out[j] = the lanes of column j added as ggml's SIMD reduction adds them
static inline __attribute__((always_inline)) void reduce_lanes(float (*P)[VT], int w, float *out) {
    for (int l = 0; l < LANES / 2; l++)            // accumulators 0 += 2, 1 += 3
        for (int j = 0; j < w; j++) P[l][j] += P[l + LANES / 2][j];
    for (int l = 0; l < LANES / 4; l++)            // 0 += 1
        for (int j = 0; j < w; j++) P[l][j] += P[l + LANES / 4][j];
#if LANES == 64                                     // _mm512_reduce_add_ps: 8+8, 4+4, then (0+2) + (1+3)
    for (int l = 0; l < 8; l++)
        for (int j = 0; j < w; j++) P[l][j] += P[l + 8][j];
    for (int l = 0; l < 4; l++)
        for (int j = 0; j < w; j++) P[l][j] += P[l + 4][j];
    for (int j = 0; j < w; j++) out[j] = (P[0][j] + P[2][j]) + (P[1][j] + P[3][j]);
#else                                               // 128-bit halves added, then two horizontal adds
    for (int l = 0; l < 4; l++)
        for (int j = 0; j < w; j++) P[l][j] += P[l + 4][j];
    for (int j = 0; j < w; j++) out[j] = (P[0][j] + P[1][j]) + (P[2][j] + P[3][j]);
#endif
}
#endif

static inline __attribute__((always_inline)) void
tile(float *S, int64_t K, int64_t V, int64_t j0, const int w, const float *k, const float *q, const float *v, float d,
     float beta, float scale, float *o) {
    float rk[VT] = {0}, rq[VT] = {0}, delta[VT];
#if LANES
    if (K % LANES == 0) {
        float P[LANES][VT];
        for (int l = 0; l < LANES; l++)
            for (int j = 0; j < w; j++) P[l][j] = 0.f;
        for (int64_t i = 0; i < K; i++) {
            const float *row = S + i * V + j0;  // d·row rounded as ggml's stored product: recomputed below
            float *p = P[i % LANES];
            for (int j = 0; j < w; j++) p[j] = MAD(k[i], d * row[j], p[j]);
        }
        reduce_lanes(P, w, rk);
        for (int j = 0; j < w; j++) delta[j] = (v[j0 + j] - rk[j]) * beta;
        for (int l = 0; l < LANES; l++)
            for (int j = 0; j < w; j++) P[l][j] = 0.f;
        for (int64_t i = 0; i < K; i++) {
            float *row = S + i * V + j0, *p = P[i % LANES];
            for (int j = 0; j < w; j++) { row[j] = MAD(k[i], delta[j], d * row[j]); p[j] = MAD(q[i], row[j], p[j]); }
        }
        reduce_lanes(P, w, rq);
        for (int j = 0; j < w; j++) o[j0 + j] = rq[j] * scale;
        return;
    }
#endif
    for (int64_t i = 0; i < K; i++) {
        const float *row = S + i * V + j0;
        for (int j = 0; j < w; j++) rk[j] = MAD(k[i], d * row[j], rk[j]);
    }
    for (int j = 0; j < w; j++) delta[j] = (v[j0 + j] - rk[j]) * beta;
    for (int64_t i = 0; i < K; i++) {
        float *row = S + i * V + j0;
        for (int j = 0; j < w; j++) { row[j] = MAD(k[i], delta[j], d * row[j]); rq[j] = MAD(q[i], row[j], rq[j]); }
    }
    for (int j = 0; j < w; j++) o[j0 + j] = rq[j] * scale;
}

// q, k [T, BH, K] (normalised if the model asks; q's scale is applied to o, as ggml does); v, o [T, BH, V];
// g (the log decay, exp'd here by libm's expf as ggml does) and beta [T, BH]; S [BH, K, V], read as the initial
// state and left holding the final one.
void qlab_gdn_recurrent(const float *q, const float *k, const float *v, const float *g, const float *beta,
                        float *S, float *o, int64_t T, int64_t BH, int64_t K, int64_t V, float scale, int nt) {
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t h = 0; h < BH; h++) {
        float *Sh = S + h * K * V;
        for (int64_t t = 0; t < T; t++) {
            const int64_t th = t * BH + h;
            const float *kh = k + th * K, *qh = q + th * K, *vh = v + th * V;
            for (int64_t j0 = 0; j0 < V; j0 += VT) {
                if (V - j0 >= VT) tile(Sh, K, V, j0, VT, kh, qh, vh, expf(g[th]), beta[th], scale, o + th * V);
                else tile(Sh, K, V, j0, (int)(V - j0), kh, qh, vh, expf(g[th]), beta[th], scale, o + th * V);
            }
        }
    }
}

// The causal depthwise conv of one decode token, in place: state [B, D, W-1] holds the last W-1 inputs (oldest
// first); y = silu(sum_i state[i]·w[i] + x·w[W-1] + bias) (no silu when silu == 0); then the state shifts by one
// and takes x. Replaces five small torch ops whose [D, W-1] inner dimension they handle slowly.
void qlab_conv1d_update(const float *x, float *state, const float *w, const float *bias, float *y, int64_t B,
                        int64_t D, int64_t W, int silu) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) {
            float *s = state + (b * D + d) * (W - 1);
            const float *wd = w + d * W, xv = x[b * D + d];
            float acc = xv * wd[0];  // oldest tap first, fused multiply-adds, as ggml's ssm_conv sums
            if (W > 1) {
                acc = s[0] * wd[0];
                for (int64_t i = 1; i < W - 1; i++) acc = MAD(s[i], wd[i], acc);
                acc = MAD(xv, wd[W - 1], acc);
            }
            if (bias) acc += bias[d];
            for (int64_t i = 0; i + 1 < W - 1; i++) s[i] = s[i + 1];
            if (W > 1) s[W - 2] = xv;
            y[b * D + d] = acc;
        }
    if (silu)  // a separate pass, which vectorises
        for (int64_t i = 0; i < B * D; i++) y[i] = qlab_siluf(y[i]);
}

// ---- one whole DeltaNet layer's decode step after its input projections, in one call --------------------------
// Qwen3.6's Gated DeltaNet between the projections and ssm_out, for one token per sequence (B sequences):
//     y = silu(causal conv(qkv)) = [q | k | v];  q, k l2-normalised per key head, q scaled by K^-1/2
//     g = ssm_a · softplus(a + dt_bias), beta = sigmoid(b);  the delta rule step above on S
//     out = rmsnorm(o) · norm_w · silu(z), per value head
// In torch this is ~25 small ops a layer, ~1 ms after a large matmul has pushed the interpreter out of cache;
// here it is one pass. Head orders: qkv's v, z, a, b, ssm_a, dt_bias and out are GGUF's *tiled* value-head order
// (value head j reads key head j % H); the state S keeps the kernels' *grouped* order (head m reads key head
// m / (HV / H)), so that prefill (chunked, grouped) and this step share it: grouped m is tiled (m % r)·H + m / r.
// log(1 + e^x) as ggml computes it (not log1p: for x << 0 the two differ by up to 3e-4 relative, and that
// difference reaches every element of the state through exp(g)); the threshold 20 is ggml's and torch's
static inline float softplus(float x) { return x > 20.f ? x : logf(1.f + expf(x)); }

// The DeltaNet gate of n rows of HV heads (prefill): g = ssm_a · softplus(a + dt_bias), libm's expf and logf as
// ggml's (torch's vectorised exp and log differ from them by an ulp in ~8 % of values, and g reaches every element
// of the state through exp(g))
void qlab_gdn_gate(const float *a, const float *ssm_a, const float *dt_bias, float *g, int64_t n, int64_t HV) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < HV; j++) g[r * HV + j] = ssm_a[j] * softplus(a[r * HV + j] + dt_bias[j]);
}

void qlab_gdn_decode_layer(const float *qkv, float *conv_state, const float *conv_w, const float *z,
                           const float *b_in, const float *a_in, const float *ssm_a, const float *dt_bias,
                           const float *norm_w, float *S, float *out, int64_t B, int64_t H, int64_t HV, int64_t K,
                           int64_t V, int64_t W, float eps, int nt) {
    const int64_t D = 2 * H * K + HV * V, r = HV / H;
    float *y = (float *)malloc(sizeof(float) * (size_t)(B * D));
    qlab_conv1d_update(qkv, conv_state, conv_w, 0, y, B, D, W, 1);
    const float scale = 1.f / sqrtf((float)K);
    const float unit = 1.f / sqrtf((float)K);
    for (int64_t b = 0; b < B; b++)  // l2norm q and k per key head, x / sqrt(|x|² + 1e-6), as llama.cpp's graph
        for (int64_t h = 0; h < 2 * H; h++) {  // computes it: an RMSNorm (eps 1e-6 / K), then a scale by K^-1/2
            float *x = y + b * D + h * K;
            double ss = 0.;
            for (int64_t i = 0; i < K; i++) ss += (double)(x[i] * x[i]);
            const float mean = (float)(ss / (double)K), f = 1.f / sqrtf(mean + 1e-6f / (float)K);
            for (int64_t i = 0; i < K; i++) x[i] = x[i] * f * unit;
        }
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t bm = 0; bm < B * HV; bm++) {
        const int64_t b = bm / HV, m = bm % HV, h = m / r, j = (m % r) * H + h;
        const float *qh = y + b * D + h * K, *kh = y + b * D + (H + h) * K, *vh = y + b * D + 2 * H * K + j * V;
        const float d = expf(ssm_a[j] * softplus(a_in[b * HV + j] + dt_bias[j]));
        const float beta = 1.f / (1.f + expf(-b_in[b * HV + j]));
        float *o = out + b * HV * V + j * V, *Sh = S + bm * K * V;
        for (int64_t j0 = 0; j0 < V; j0 += VT) {
            if (V - j0 >= VT) tile(Sh, K, V, j0, VT, kh, qh, vh, d, beta, scale, o);
            else tile(Sh, K, V, j0, (int)(V - j0), kh, qh, vh, d, beta, scale, o);
        }
        double ss = 0.;  // gated RMSNorm of this head's output (ggml_rms_norm: the mean square in double)
        for (int64_t i = 0; i < V; i++) ss += (double)(o[i] * o[i]);
        const float mean = (float)(ss / (double)V), inv = 1.f / sqrtf(mean + eps);
        const float *zh = z + b * HV * V + j * V;
        for (int64_t i = 0; i < V; i++) o[i] = o[i] * inv * norm_w[i] * qlab_siluf(zh[i]);
    }
    free(y);
}
