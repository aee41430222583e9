// Dequantizing GEMV for decode (M <= 8): y[m, n] = sum_k x[m, k] · w[n, k], w in ggml block layout.
//
// One warp per output row n (blockDim = 32 × ROWS_PER_BLOCK): lane l walks blocks l, l+32, … of the row, decodes
// each block in registers (same arithmetic as ggml's dequantize_row_*), accumulates M fp32 partial sums, and
// the warp reduces them with shuffles. Weights are read exactly once; x (M × K fp32) is re-read from L1/L2.
// Loaded by cupy.RawModule (cupy_gemv.py); compiled by nvcc for sm_80/86/89/90/120 in the compile report
// (qlab/kernels/aot.py, `qlab kernels compile-report`).
#include <cuda_fp16.h>
#include <stdint.h>

#define MAX_M 8

__device__ __forceinline__ float f16_at(const uint8_t *p) {
    return __half2float(__ushort_as_half((unsigned short)(p[0] | (p[1] << 8))));
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ void store_row(float (&acc)[MAX_M], float *y, int M, int N, int n) {
    for (int m = 0; m < MAX_M; m++) {
        if (m >= M) break;
        const float s = warp_sum(acc[m]);
        if (threadIdx.x % 32 == 0) y[(int64_t)m * N + n] = s;
    }
}

// The 6-bit scale and min of sub-block j (0..7) in the 12 scale bytes s of a Q4_K/Q5_K super-block
__device__ __forceinline__ void scale_min_k4(const uint8_t *s, int j, int &sc, int &mn) {
    if (j < 4) {
        sc = s[j] & 63;
        mn = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q8_0 { half d; int8 qs[32]; }
extern "C" __global__ void gemv_q8_0(const float *__restrict__ x, const uint8_t *__restrict__ w,
                                     float *__restrict__ y, int M, int N, int K) {
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const int nb = K / 32;
    const uint8_t *row = w + (int64_t)n * nb * 34;
    float acc[MAX_M] = {0.f};
    for (int b = lane; b < nb; b += 32) {
        const uint8_t *blk = row + b * 34;
        const float d = f16_at(blk);
        const int8_t *q = (const int8_t *)(blk + 2);
        for (int m = 0; m < MAX_M; m++) {
            if (m >= M) break;
            const float *xm = x + (int64_t)m * K + b * 32;
            float s = 0.f;
#pragma unroll
            for (int i = 0; i < 32; i++) s += (float)q[i] * xm[i];
            acc[m] += d * s;
        }
    }
    store_row(acc, y, M, N, n);
}

// Q4_K { half d, dmin; u8 scales[12]; u8 qs[128]; } and Q5_K { half d, dmin; u8 scales[12]; u8 qh[32];
// u8 qs[128]; } (Q5 = true: qh[i] bit j is the 5th bit of element i of sub-block j) — a lane takes one 32-weight
// sub-block at a time
template <bool Q5>
__device__ __forceinline__ void gemv_k45(const float *__restrict__ x, const uint8_t *__restrict__ w,
                                         float *__restrict__ y, int M, int N, int K) {
    constexpr int BYTES = Q5 ? 176 : 144, QS = Q5 ? 48 : 16;
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const int nsub = K / 32;
    const uint8_t *row = w + (int64_t)n * (K / 256) * BYTES;
    float acc[MAX_M] = {0.f};
    for (int g = lane; g < nsub; g += 32) {
        const uint8_t *blk = row + (g / 8) * BYTES;
        const int j = g % 8;
        int sc, mn;
        scale_min_k4(blk + 4, j, sc, mn);
        const float dl = f16_at(blk) * (float)sc, ml = f16_at(blk + 2) * (float)mn;
        const uint8_t *qh = blk + 16, *qs = blk + QS + (j / 2) * 32;
        const int shift = (j % 2) * 4;
        for (int m = 0; m < MAX_M; m++) {
            if (m >= M) break;
            const float *xm = x + (int64_t)m * K + g * 32;
            float s_qx = 0.f, s_x = 0.f;
#pragma unroll
            for (int i = 0; i < 32; i++) {
                const int q = ((qs[i] >> shift) & 15) | (Q5 ? ((qh[i] >> j) & 1) << 4 : 0);
                s_qx += (float)q * xm[i];
                s_x += xm[i];
            }
            acc[m] += dl * s_qx - ml * s_x;
        }
    }
    store_row(acc, y, M, N, n);
}

extern "C" __global__ void gemv_q4_k(const float *__restrict__ x, const uint8_t *__restrict__ w,
                                     float *__restrict__ y, int M, int N, int K) {
    gemv_k45<false>(x, w, y, M, N, K);
}

extern "C" __global__ void gemv_q5_k(const float *__restrict__ x, const uint8_t *__restrict__ w,
                                     float *__restrict__ y, int M, int N, int K) {
    gemv_k45<true>(x, w, y, M, N, K);
}

// INT4-G128 { u8 qs[64]; half scale; half zero; } — byte t holds elements 2t (low) and 2t+1 (high)
extern "C" __global__ void gemv_int4_g128(const float *__restrict__ x, const uint8_t *__restrict__ w,
                                          float *__restrict__ y, int M, int N, int K) {
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const int ng = K / 128;
    const uint8_t *row = w + (int64_t)n * ng * 68;
    float acc[MAX_M] = {0.f};
    for (int g = lane; g < ng; g += 32) {
        const uint8_t *blk = row + g * 68;
        const float sc = f16_at(blk + 64), z = f16_at(blk + 66);
        for (int m = 0; m < MAX_M; m++) {
            if (m >= M) break;
            const float *xm = x + (int64_t)m * K + g * 128;
            float s_qx = 0.f, s_x = 0.f;
#pragma unroll 8
            for (int t = 0; t < 64; t++) {
                const uint8_t b = blk[t];
                s_qx += (float)(b & 15) * xm[2 * t] + (float)(b >> 4) * xm[2 * t + 1];
                s_x += xm[2 * t] + xm[2 * t + 1];
            }
            acc[m] += sc * (s_qx - z * s_x);
        }
    }
    store_row(acc, y, M, N, n);
}

// Q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; } — a lane takes 32 weights (two 16-weight scales) at a
// time: elements 32j + i of the super-block, in half h = j / 4: ql byte h·64 + (j % 2)·32 + i (low nibble for
// j % 4 < 2), qh byte 128 + h·32 + i at bits 2·(j % 4)
extern "C" __global__ void gemv_q6_k(const float *__restrict__ x, const uint8_t *__restrict__ w,
                                     float *__restrict__ y, int M, int N, int K) {
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const int nsub = K / 32;
    const uint8_t *row = w + (int64_t)n * (K / 256) * 210;
    float acc[MAX_M] = {0.f};
    for (int g = lane; g < nsub; g += 32) {
        const uint8_t *blk = row + (g / 8) * 210;
        const int j = g % 8, h = j / 4;
        const uint8_t *ql = blk + h * 64 + (j % 2) * 32, *qh = blk + 128 + h * 32;
        const int lo_shift = (j % 4 < 2) ? 0 : 4, hi_shift = (j % 4) * 2;
        const float d = f16_at(blk + 208);
        const float da = d * (float)(int8_t)blk[192 + 2 * j], db = d * (float)(int8_t)blk[193 + 2 * j];
        for (int m = 0; m < MAX_M; m++) {
            if (m >= M) break;
            const float *xm = x + (int64_t)m * K + g * 32;
            float sa = 0.f, sb = 0.f;
#pragma unroll
            for (int i = 0; i < 32; i++) {
                const int q = (((ql[i] >> lo_shift) & 15) | (((qh[i] >> hi_shift) & 3) << 4)) - 32;
                if (i < 16) sa += (float)q * xm[i];
                else sb += (float)q * xm[i];
            }
            acc[m] += da * sa + db * sb;
        }
    }
    store_row(acc, y, M, N, n);
}
