// Split-K GQA decode attention in CUDA C, compiled at run time by CuPy (cupy_decode.py) or ahead of time by
// nvcc for the compile test. README.md ("Decode") has the math; triton_decode.py is the same algorithm.
//
// decode_split_<kv>: grid (num_splits, HKV, B), block WARPS·32 threads. A block owns one KV head and one slice
// of one row's sequence. Each warp walks every WARPS-th token of the slice; lane l holds head dims
// [l·VEC, (l+1)·VEC) of the token's K and V row (one coalesced 16-byte load per lane at D=256 bf16), so all
// GROUP query heads of the KV head use one read of K and V. Each warp keeps an online softmax per query head;
// the warps are then combined through shared memory into one partial (o, lse) per (row, query head, split).
// decode_merge: grid (HQ, B), block HEAD_DIM threads: log-sum-exp merge of the splits.
//
// Compile-time sizes (CuPy passes them per shape): HEAD_DIM (multiple of 32, <= 512), GROUP (query heads
// per KV head, <= 8), WARPS.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#ifndef HEAD_DIM
#define HEAD_DIM 256
#endif
#ifndef GROUP
#define GROUP 6
#endif
#ifndef WARPS
#define WARPS 4
#endif

#define VEC (HEAD_DIM / 32)
static_assert(HEAD_DIM % 32 == 0 && VEC <= 16, "HEAD_DIM must be a multiple of 32, at most 512");
static_assert(GROUP >= 1 && GROUP <= 8, "GROUP (query heads per KV head) must be 1..8");

// Each cache type decodes from 32-bit words with register-only bit operations (no address-taken locals).
struct e4m3 { unsigned char bits; };   // FP8 e4m3 as a byte: sm_80/86 have no e4m3 unit, so decode by hand

template <typename T> struct Codec;
template <> struct Codec<__nv_bfloat16> {
    static constexpr int PER_WORD = 2;
    __device__ static void decode(unsigned w, float* x) {
        x[0] = __uint_as_float(w << 16);
        x[1] = __uint_as_float(w & 0xffff0000u);
    }
};
template <> struct Codec<__half> {
    static constexpr int PER_WORD = 2;
    __device__ static void decode(unsigned w, float* x) {
        x[0] = __half2float(__ushort_as_half((unsigned short)(w & 0xffffu)));
        x[1] = __half2float(__ushort_as_half((unsigned short)(w >> 16)));
    }
};
template <> struct Codec<e4m3> {
    static constexpr int PER_WORD = 4;
    // normal codes move into fp32 bit positions (exponent bias 7 -> 127); subnormals are mantissa * 2^-9
    __device__ static float one(unsigned u) {
        const unsigned e = (u >> 3) & 15u, m = u & 7u;
        const float sub = (u & 0x80u) ? -(float)m * 0.001953125f : (float)m * 0.001953125f;
        return e ? __uint_as_float(((u & 0x80u) << 24) | ((e + 120u) << 23) | (m << 20)) : sub;
    }
    __device__ static void decode(unsigned w, float* x) {
#pragma unroll
        for (int i = 0; i < 4; ++i) x[i] = one((w >> (8 * i)) & 0xffu);
    }
};

// VEC consecutive elements -> fp32 in the widest loads the lane's bytes allow (rows are 16-byte aligned:
// the launcher checks it).
template <typename T>
__device__ __forceinline__ void load_row(const T* __restrict__ p, float (&x)[VEC]) {
    constexpr int PW = Codec<T>::PER_WORD, WORDS = VEC / PW;
    static_assert(VEC % PW == 0, "HEAD_DIM/32 must be a multiple of the elements per 32-bit word");
    if constexpr (WORDS % 4 == 0) {
#pragma unroll
        for (int c = 0; c < WORDS / 4; ++c) {
            const uint4 r = __ldg(reinterpret_cast<const uint4*>(p) + c);
            Codec<T>::decode(r.x, x + (4 * c + 0) * PW);
            Codec<T>::decode(r.y, x + (4 * c + 1) * PW);
            Codec<T>::decode(r.z, x + (4 * c + 2) * PW);
            Codec<T>::decode(r.w, x + (4 * c + 3) * PW);
        }
    } else if constexpr (WORDS % 2 == 0) {
#pragma unroll
        for (int c = 0; c < WORDS / 2; ++c) {
            const uint2 r = __ldg(reinterpret_cast<const uint2*>(p) + c);
            Codec<T>::decode(r.x, x + (2 * c + 0) * PW);
            Codec<T>::decode(r.y, x + (2 * c + 1) * PW);
        }
    } else {
#pragma unroll
        for (int c = 0; c < WORDS; ++c) Codec<T>::decode(__ldg(reinterpret_cast<const unsigned*>(p) + c), x + c * PW);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// q: fp32 [B, HQ, HEAD_DIM] contiguous. k, v: [B, HKV, S, HEAD_DIM] with strides (sb, sh, ss, 1) in elements.
// k_scale, v_scale: fp32 [B, HKV] (all ones for a bf16/fp16 cache). o_part: fp32 [B, HQ, num_splits, HEAD_DIM];
// lse: fp32 [B, HQ, num_splits] (natural log; -inf for an empty split).
template <typename T>
__device__ void decode_split(const float* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                             const int* __restrict__ lengths, const float* __restrict__ k_scale,
                             const float* __restrict__ v_scale, float* __restrict__ o_part,
                             float* __restrict__ lse, float scale, long long sb, long long sh, long long ss,
                             int split_len, int num_splits, int HKV) {
    __shared__ float sm_m[WARPS][GROUP];
    __shared__ float sm_l[WARPS][GROUP];
    __shared__ float sm_acc[WARPS][HEAD_DIM];

    const int i_s = blockIdx.x, i_h = blockIdx.y, i_b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int HQ = HKV * GROUP;
    const int L = lengths[i_b];
    const int start = i_s * split_len;
    const int end = min(start + split_len, L);
    const float s_scale = scale * k_scale[i_b * HKV + i_h];

    float qr[GROUP][VEC];                  // this lane's slice of every query head of the group
#pragma unroll
    for (int g = 0; g < GROUP; ++g)
#pragma unroll
        for (int i = 0; i < VEC; ++i)
            qr[g][i] = q[((long long)i_b * HQ + i_h * GROUP + g) * HEAD_DIM + lane * VEC + i] * s_scale;

    float m[GROUP], l[GROUP], acc[GROUP][VEC];
#pragma unroll
    for (int g = 0; g < GROUP; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[g][i] = 0.f;
    }

    const T* kb = k + i_b * sb + i_h * sh + lane * VEC;
    const T* vb = v + i_b * sb + i_h * sh + lane * VEC;
    for (int t = start + warp; t < end; t += WARPS) {
        float kr[VEC], vr[VEC];
        load_row(kb + t * ss, kr);
        load_row(vb + t * ss, vr);
#pragma unroll
        for (int g = 0; g < GROUP; ++g) {
            float s = 0.f;
#pragma unroll
            for (int i = 0; i < VEC; ++i) s += qr[g][i] * kr[i];
            s = warp_sum(s);
            const float m_new = fmaxf(m[g], s);
            const float alpha = __expf(m[g] - m_new);   // 0 on the first token (m = -inf)
            const float p = __expf(s - m_new);
            l[g] = l[g] * alpha + p;
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[g][i] = acc[g][i] * alpha + p * vr[i];
            m[g] = m_new;
        }
    }

    // Combine the warps one query head at a time through a [WARPS, HEAD_DIM] buffer (8 KiB at 8 warps).
    if (lane == 0) {
#pragma unroll
        for (int g = 0; g < GROUP; ++g) {
            sm_m[warp][g] = m[g];
            sm_l[warp][g] = l[g];
        }
    }
    const float vs = v_scale[i_b * HKV + i_h];
#pragma unroll
    for (int g = 0; g < GROUP; ++g) {
#pragma unroll
        for (int i = 0; i < VEC; ++i) sm_acc[warp][lane * VEC + i] = acc[g][i];
        __syncthreads();
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) M = fmaxf(M, sm_m[w][g]);
        const long long row = ((long long)i_b * HQ + i_h * GROUP + g) * num_splits + i_s;
        for (int d = threadIdx.x; d < HEAD_DIM; d += WARPS * 32) {
            float den = 0.f, num = 0.f;
            if (M != -INFINITY) {
#pragma unroll
                for (int w = 0; w < WARPS; ++w) {
                    const float c = __expf(sm_m[w][g] - M);   // 0 for a warp that saw no token
                    den += sm_l[w][g] * c;
                    num += sm_acc[w][d] * c;
                }
            }
            o_part[row * HEAD_DIM + d] = den > 0.f ? num / den * vs : 0.f;
            if (d == 0) lse[row] = den > 0.f ? M + __logf(den) : -INFINITY;
        }
        __syncthreads();                   // before the next head overwrites sm_acc
    }
}

#define DECODE_SPLIT(NAME, T)                                                                                 \
    extern "C" __global__ void                                                                                \
        NAME(const float* q, const T* k, const T* v, const int* lengths, const float* k_scale,                \
             const float* v_scale, float* o_part, float* lse, float scale, long long sb, long long sh,         \
             long long ss, int split_len, int num_splits, int HKV) {                                         \
        decode_split<T>(q, k, v, lengths, k_scale, v_scale, o_part, lse, scale, sb, sh, ss, split_len,       \
                        num_splits, HKV);                                                                     \
    }

DECODE_SPLIT(decode_split_bf16, __nv_bfloat16)
DECODE_SPLIT(decode_split_f16, __half)
DECODE_SPLIT(decode_split_fp8, e4m3)

// out: fp32 [B, HQ, HEAD_DIM]. Split 0 always holds >= 1 token, so the max lse is finite.
extern "C" __global__ void decode_merge(const float* __restrict__ o_part, const float* __restrict__ lse,
                                        float* __restrict__ out, int num_splits, int HQ) {
    const int i_h = blockIdx.x, i_b = blockIdx.y, d = threadIdx.x;
    const long long row = ((long long)i_b * HQ + i_h) * num_splits;
    float M = -INFINITY;
    for (int s = 0; s < num_splits; ++s) M = fmaxf(M, lse[row + s]);
    float num = 0.f, den = 0.f;
    for (int s = 0; s < num_splits; ++s) {
        const float w = __expf(lse[row + s] - M);
        num += w * o_part[(row + s) * HEAD_DIM + d];
        den += w;
    }
    out[((long long)i_b * HQ + i_h) * HEAD_DIM + d] = num / den;
}
