// The decode loop's small element-wise ops on the CPU: RMSNorm (optionally after the residual add) and SwiGLU.
//
// Why in C: each is a few microseconds of arithmetic on 5120 floats, but the decode step runs them right after a
// matmul has streamed tens of MB through the caches, and then one torch call costs what its dispatch code costs
// to fetch back from memory: F.rms_norm measured 17 us warm and 216 us cold here, a ctypes call into this file
// ~45 us cold. The loop makes ~10 such calls a token.

#include <math.h>
#include <stdint.h>

#include "cpu_math.h"

// rows of D floats, row r of x at x + r * ldx (rows may be strided views, e.g. the query half of q_proj's output);
// with h (contiguous [rows, D]), s = x + h is written to sum and normalised, else x itself. y [rows, D] contiguous:
//     y = s / sqrt(mean(s²) + eps) · w
void qlab_rms_norm(const float *x, int64_t ldx, const float *h, const float *w, float *sum, float *y, int64_t rows,
                   int64_t D, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        const float *src = xr;
        double ss = 0.;  // ggml_rms_norm's numerics: the sum of squares in double, the mean and scale in float
        if (h) {
            float *sr = sum + r * D;
            const float *hr = h + r * D;
            for (int64_t i = 0; i < D; i++) { sr[i] = xr[i] + hr[i]; ss += (double)(sr[i] * sr[i]); }
            src = sr;
        } else {
            for (int64_t i = 0; i < D; i++) ss += (double)(xr[i] * xr[i]);
        }
        const float mean = (float)(ss / (double)D), inv = 1.f / sqrtf(mean + eps);
        float *yr = y + r * D;
        for (int64_t i = 0; i < D; i++) yr[i] = src[i] * inv * w[i];
    }
}

// y = silu(x) over n floats (the DeltaNet conv's activation and output gate at prefill)
void qlab_silu(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qlab_siluf(x[i]);
}

// y = silu(g) · u over n floats (the FFN's gate and up projections)
void qlab_swiglu(const float *g, const float *u, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qlab_siluf(g[i]) * u[i];
}
