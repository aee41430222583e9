"""Bytes and FLOPs of the Gated DeltaNet ops (torch-free). Shapes as in the kernels: q, k [B, T, H, K];
v [B, T, HV, V]; g, beta [B, T, HV]; state [B, HV, K, V] fp32."""

from __future__ import annotations

from qlab.kernels.cost import OpCost


def recurrent(B: int, T: int, H: int, HV: int, K: int, V: int, io_bytes: int = 2, state_bytes: int = 4) -> OpCost:
    """T recurrent steps: the state is read once and written once (it stays on chip across steps);
    per step and value head: decay (KV), Sᵀk (2KV), rank-1 update (2KV), Sᵀq (2KV) ≈ 7KV FLOPs."""
    state = 2 * B * HV * K * V * state_bytes
    io = B * T * (2 * H * K + 2 * HV * V + 2 * HV) * io_bytes  # q, k, v, o, g, beta
    flops = 7 * B * T * HV * K * V
    return OpCost(state + io, flops)


def chunk(B: int, T: int, H: int, HV: int, K: int, V: int, chunk_size: int = 64, io_bytes: int = 2,
          state_bytes: int = 4, with_state: bool = True) -> OpCost:
    """Chunked (WY) prefill. Per value head and chunk of C tokens: q·kᵀ and k·kᵀ (2·2C²K), the triangular
    solve (≈ C³/3·2), w = A·k and u = A·v (2C²K + 2C²V), q·S and w·S (2·2CKV), intra-chunk attention·v
    (2C²V) and the state update kᵀ·v (2CKV): about 6CKV + 6C²K/… per chunk, written out below."""
    C = min(chunk_size, T)  # a prompt shorter than a chunk computes only its own tokens
    n_chunks = -(-T // C) if T else 0
    per_chunk = (4 * C * C * K + (2 * C**3) / 3 + 2 * C * C * K + 2 * C * C * V + 4 * C * K * V + 2 * C * C * V
                 + 2 * C * K * V)
    flops = B * HV * n_chunks * per_chunk
    io = B * T * (2 * H * K + 2 * HV * V + 2 * HV) * io_bytes
    state = (2 if with_state else 1) * B * HV * K * V * state_bytes
    return OpCost(io + state, flops)


def conv1d(B: int, T: int, D: int, width: int = 4, io_bytes: int = 2) -> OpCost:
    """Depthwise causal conv1d + SiLU over D channels: read x, write y, the weights, the rolling state."""
    return OpCost(B * T * D * 2 * io_bytes + D * width * io_bytes + 2 * B * D * (width - 1) * io_bytes,
                  B * T * D * (2 * width + 4))
