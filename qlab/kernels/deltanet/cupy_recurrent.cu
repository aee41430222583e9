// Gated DeltaNet decode step in CUDA C (compiled by cupy.RawModule / NVRTC, and by nvcc in the tests).
// Math and layout: README.md and naive.py. q, k [B, T, H, K]; v, o [B, T, HV, V] (float or bf16);
// g, beta [B, T, HV], A_log, dt_bias [HV] fp32; state h0 / ht [B, HV, K, V] fp32 (may alias: in place).
//
// One block per (V block of BV columns, batch x value head); thread (tx, ty) owns column tx of the block and
// the K / KSPLIT state rows ty, ty + KSPLIT, ... in registers, for all T steps. A warp spans consecutive
// columns of one row, so every state load and store is coalesced. Each step reads the state once:
//   r_k = S^T k, r_q = S^T q (old state, reduced over ty in shared memory),
//   delta = beta (v - e^g r_k),  o = e^g r_q + (k.q) delta,  S <- e^g S + k delta^T.

typedef unsigned short bf16_t;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16_t x) { return __uint_as_float(((unsigned)x) << 16); }
__device__ __forceinline__ void store_io(float* p, float x) { *p = x; }
__device__ __forceinline__ void store_io(bf16_t* p, float x) {
  unsigned u = __float_as_uint(x);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (outputs are finite)
  *p = (bf16_t)(u >> 16);
}

enum { USE_INITIAL_STATE = 1, STORE_FINAL_STATE = 2, USE_QK_L2NORM = 4, USE_GATE = 8, HAS_DT_BIAS = 16 };

template <typename io_t, int K, int BV, int KSPLIT>
__global__ void __launch_bounds__(BV * KSPLIT)
gdn_recurrent(const io_t* __restrict__ q, const io_t* __restrict__ k, const io_t* __restrict__ v,
              const float* __restrict__ g, const float* __restrict__ beta, const float* __restrict__ A_log,
              const float* __restrict__ dt_bias, io_t* __restrict__ o, const float* h0, float* ht,
              float scale, int T, int H, int HV, int V, int flags) {
  static_assert(K % KSPLIT == 0, "K must be a multiple of KSPLIT");
  constexpr int NR = K / KSPLIT;  // state rows per thread
  __shared__ float s_q[K], s_k[K];
  __shared__ float s_red[2][KSPLIT][BV];
  __shared__ float s_scal[4];  // q scale, k scale, k.q (scaled), [unused]
  __shared__ float s_gate[2];  // decay e^g, beta

  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * BV + tx;
  const long i_nh = blockIdx.y;
  const long i_n = i_nh / HV;
  const int i_hv = (int)(i_nh % HV), i_h = i_hv / (HV / H);
  const int col = blockIdx.x * BV + tx;
  const bool in_col = col < V;

  float h[NR];
  const long state_base = i_nh * (long)K * V + col;
#pragma unroll
  for (int j = 0; j < NR; ++j)
    h[j] = ((flags & USE_INITIAL_STATE) && in_col) ? h0[state_base + (long)(ty + j * KSPLIT) * V] : 0.f;

  for (int t = 0; t < T; ++t) {
    const long qk_base = ((i_n * T + t) * H + i_h) * (long)K;
    const long hv_row = (i_n * T + t) * HV + i_hv;
    for (int i = tid; i < K; i += BV * KSPLIT) {
      s_q[i] = to_f32(q[qk_base + i]);
      s_k[i] = to_f32(k[qk_base + i]);
    }
    __syncthreads();
    if (tid < 32) {  // warp 0: norms, k.q and the gate
      float sqq = 0.f, skk = 0.f, sqk = 0.f;
      for (int i = tid; i < K; i += 32) {
        sqq += s_q[i] * s_q[i];
        skk += s_k[i] * s_k[i];
        sqk += s_q[i] * s_k[i];
      }
      for (int off = 16; off > 0; off >>= 1) {
        sqq += __shfl_xor_sync(0xffffffffu, sqq, off);
        skk += __shfl_xor_sync(0xffffffffu, skk, off);
        sqk += __shfl_xor_sync(0xffffffffu, sqk, off);
      }
      if (tid == 0) {
        const bool l2 = flags & USE_QK_L2NORM;
        const float nq = l2 ? rsqrtf(sqq + 1e-6f) : 1.f, nk = l2 ? rsqrtf(skk + 1e-6f) : 1.f;
        s_scal[0] = nq * scale;
        s_scal[1] = nk;
        s_scal[2] = sqk * nq * nk * scale;
        float gg = g[hv_row], bb = beta[hv_row];
        if (flags & USE_GATE) {  // g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b)
          const float a = gg + ((flags & HAS_DT_BIAS) ? dt_bias[i_hv] : 0.f);
          gg = -expf(A_log[i_hv]) * (a > 20.f ? a : log1pf(expf(a)));
          bb = 1.f / (1.f + expf(-bb));
        }
        s_gate[0] = expf(gg);
        s_gate[1] = bb;
      }
    }
    float pk = 0.f, pq = 0.f;
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      pk += h[j] * s_k[ty + j * KSPLIT];
      pq += h[j] * s_q[ty + j * KSPLIT];
    }
    s_red[0][ty][tx] = pk;
    s_red[1][ty][tx] = pq;
    __syncthreads();
    float rk = 0.f, rq = 0.f;
#pragma unroll
    for (int s = 0; s < KSPLIT; ++s) {
      rk += s_red[0][s][tx];
      rq += s_red[1][s][tx];
    }
    const float qs = s_scal[0], ks = s_scal[1], kq = s_scal[2], decay = s_gate[0], bt = s_gate[1];
    const float vv = in_col ? to_f32(v[hv_row * V + col]) : 0.f;
    const float delta = bt * (vv - decay * rk * ks);
    if (ty == 0 && in_col) store_io(&o[hv_row * V + col], decay * rq * qs + kq * delta);
    const float kd = ks * delta;
#pragma unroll
    for (int j = 0; j < NR; ++j) h[j] = decay * h[j] + s_k[ty + j * KSPLIT] * kd;
    __syncthreads();  // s_q, s_k, s_red are rewritten by the next step
  }
  if ((flags & STORE_FINAL_STATE) && in_col) {
#pragma unroll
    for (int j = 0; j < NR; ++j) ht[state_base + (long)(ty + j * KSPLIT) * V] = h[j];
  }
}

#ifdef QLAB_INSTANTIATE
// nvcc builds (tests, compile reports): the configurations the tuner may pick at Qwen3.6-27B shapes (K = 128).
#define QLAB_GDN(IO, BV, KS)                                                                             \
  template __global__ void gdn_recurrent<IO, 128, BV, KS>(const IO*, const IO*, const IO*, const float*,  \
      const float*, const float*, const float*, IO*, const float*, float*, float, int, int, int, int, int);
QLAB_GDN(float, 16, 4) QLAB_GDN(float, 16, 8) QLAB_GDN(float, 16, 16)
QLAB_GDN(float, 32, 4) QLAB_GDN(float, 32, 8) QLAB_GDN(float, 32, 16)
QLAB_GDN(bf16_t, 16, 4) QLAB_GDN(bf16_t, 16, 8) QLAB_GDN(bf16_t, 16, 16)
QLAB_GDN(bf16_t, 32, 4) QLAB_GDN(bf16_t, 32, 8) QLAB_GDN(bf16_t, 32, 16)
#endif
