"""Qwen3.6-27B (llama.cpp arch `qwen35`) in torch: 48 Gated DeltaNet + 16 gated-attention layers, dense SwiGLU.

Conventions are GGUF's (what llama.cpp's converter writes, so real files and synthetic ones read alike):
- RMSNorm is x / rms(x) · w: the converter already added Qwen3.5's +1 to every norm weight except ssm_norm.
- ssm_a holds -exp(A_log); g = ssm_a · softplus(a + dt_bias), beta = sigmoid(b).
- DeltaNet value heads are in *tiled* order: value head j reads key head j % H (the converter reorders the
  Hugging Face grouped order so ggml can broadcast). The kernels (flash-linear-attention layout) read key head
  j // (HV / H), so v, g, beta are permuted into grouped order before the scan and o back after it.
- q_proj emits per head [query (256) | gate (256)]; RoPE is NEOX-paired on the first 64 dims, theta 1e7.

Layer: h = x + mixer(norm(x)); out = h + ffn(post_norm(h)). Head: logits = output · norm(x).
`prefill`, `decode_one_token`, `decode_n_tokens` are the loop; none of them waits on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from qlab.engine.config import ModelConfig
from qlab.engine.ops import Backend, Ops, OpTimer, default_backend
from qlab.engine.weights import Weights
from qlab.kernels import elementwise
from qlab.kernels.deltanet.head_order import grouped_to_tiled, tiled_to_grouped
from qlab.kernels.deltanet.layer_step_cpu import gdn_gate
from qlab.errors import QlabError


@dataclass
class DecodeState:
    """Everything a sequence carries between tokens: KV caches of attention layers, conv and recurrent states
    of DeltaNet layers, and the number of tokens already in them."""
    pos: int
    max_context: int
    k_cache: dict[int, torch.Tensor]    # layer -> [B, HKV, S, D]
    v_cache: dict[int, torch.Tensor]
    conv: dict[int, torch.Tensor]       # layer -> [B, conv_dim, W - 1]
    rec: dict[int, torch.Tensor]        # layer -> [B, HV, K, V] fp32
    mtp_pos: int = 0                    # tokens in the MTP block's KV cache (k_cache/v_cache[model.mtp_block])

    def nbytes(self) -> dict[str, int]:
        kv = sum(t.numel() * t.element_size() for d in (self.k_cache, self.v_cache) for t in d.values())
        st = sum(t.numel() * t.element_size() for d in (self.conv, self.rec) for t in d.values())
        return {"kv_cache": kv, "state": st}


class Qwen35:
    def __init__(self, weights: Weights, backend: Backend | None = None, timer: OpTimer | None = None):
        self.cfg: ModelConfig = weights.cfg
        self.backend = backend or default_backend("cpu")
        if self.backend.device != "cpu":   # small tensors (norms, gates, conv taps) live beside the activations;
            # matrices stay QuantizedWeights: each GPU impl uploads its own layout on first use
            tensors = {n: t.to(self.backend.device) if isinstance(t, torch.Tensor) else t
                       for n, t in weights.tensors.items()}
            weights = Weights(weights.cfg, tensors, weights.source, weights.keepalive)
        self.w = weights
        self.ops = Ops(self.backend, timer)
        self.device = torch.device(self.backend.device)
        self.perm = self.cfg.lin_v_heads != self.cfg.lin_k_heads   # tiled <-> grouped value heads needed
        # the MTP block's index: cfg.n_layers for synthetic weights, the file's layer count for a (sliced) GGUF
        self.mtp_block = next((int(n.split(".")[1]) for n in weights.tensors if n.endswith(".nextn.eh_proj.weight")),
                              None)

    def set_timer(self, timer: OpTimer | None) -> None:
        old = self.ops
        self.ops = Ops(self.backend, timer)
        self.ops.fallbacks, self.ops.plan = old.fallbacks, old.plan   # what was resolved stays resolved

    def set_backend(self, backend: Backend) -> None:
        """Run the following tokens with another backend (the decode tuner's candidates): impls and configs
        are resolved afresh. Same device only (the weights stay where they are)."""
        if backend.device != self.backend.device:
            raise ValueError(f"backend: device {backend.device!r}; this model lives on {self.backend.device!r}")
        self.backend = backend
        self.ops = Ops(backend, None)

    # ---- state ------------------------------------------------------------------------------------------
    def new_state(self, max_context: int, batch: int = 1) -> DecodeState:
        c = self.cfg
        dev, cd = self.device, self.backend.cache_dtype
        st = DecodeState(0, max_context, {}, {}, {}, {})
        blocks = list(range(c.n_layers)) + ([self.mtp_block] if self.mtp_block is not None else [])
        for i in blocks:
            if i == self.mtp_block or c.is_attention(i):
                st.k_cache[i] = torch.zeros(batch, c.n_kv_heads, max_context, c.head_dim, dtype=cd, device=dev)
                st.v_cache[i] = torch.zeros(batch, c.n_kv_heads, max_context, c.head_dim, dtype=cd, device=dev)
            else:
                st.conv[i] = torch.zeros(batch, c.conv_dim, c.conv_kernel - 1, dtype=self.backend.act_dtype,
                                         device=dev)
                st.rec[i] = torch.zeros(batch, c.lin_v_heads, c.lin_k_dim, c.lin_v_dim, dtype=torch.float32,
                                        device=dev)
        return st

    # ---- pieces -----------------------------------------------------------------------------------------
    def norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        from qlab.kernels.attention import rms_norm

        with self.ops.other():
            return rms_norm(x, self.w[name], eps=self.cfg.rms_eps, unit_offset=False)

    def ffn(self, x: torch.Tensor, p: str) -> torch.Tensor:
        gate, up = self.ops.linears(x, [self.w[p + "ffn_gate.weight"], self.w[p + "ffn_up.weight"]])
        with self.ops.other():
            h = elementwise.swiglu(gate, up)
        return self.ops.linear(h, self.w[p + "ffn_down.weight"])

    def attention(self, x: torch.Tensor, i: int, st: DecodeState, pos0: int | None = None) -> torch.Tensor:
        """Gated attention of block i over its KV cache; x's first token sits at position pos0 (st.pos)."""
        from qlab.kernels.attention import apply_rope, output_gate, split_q_gate

        c, p = self.cfg, f"blk.{i}."
        B, T, _ = x.shape
        P = st.pos if pos0 is None else pos0
        qg, k, v = self.ops.linears(x, [self.w[p + n] for n in ("attn_q.weight", "attn_k.weight", "attn_v.weight")])
        k, v = k.view(B, T, c.n_kv_heads, c.head_dim), v.view(B, T, c.n_kv_heads, c.head_dim)
        with self.ops.other():
            q, gate = split_q_gate(qg, c.n_heads, c.head_dim)                         # [B, T, HQ, D] each
            q = self.norm_w(q, p + "attn_q_norm.weight")
            k = self.norm_w(k, p + "attn_k_norm.weight")
            pos = torch.arange(P, P + T, device=x.device)
            q = apply_rope(q, pos, rotary_dim=c.rope_dim, theta=c.rope_theta)
            k = apply_rope(k, pos, rotary_dim=c.rope_dim, theta=c.rope_theta)
            kc, vc = st.k_cache[i], st.v_cache[i]
            kc[:, :, P:P + T] = k.transpose(1, 2).to(kc.dtype)
            vc[:, :, P:P + T] = v.transpose(1, 2).to(vc.dtype)
        if T == 1:
            lengths = torch.full((B,), P + 1, dtype=torch.int32, device=x.device)
            o = self.ops.attn_decode(q[:, 0], kc, vc, lengths, c.attn_scale, length=P + 1)[:, None]  # [B,1,HQ,D]
        elif P == 0:
            o = self.ops.attn_prefill(q, k, v, c.attn_scale)
        else:   # a prompt chunk after earlier tokens: token by token against the cache (exact, not fast)
            o = torch.cat([self.ops.attn_decode(q[:, t], kc, vc, torch.full((B,), P + t + 1,
                                                dtype=torch.int32, device=x.device), c.attn_scale,
                                                length=P + t + 1)[:, None]
                           for t in range(T)], dim=1)
        with self.ops.other():
            o = output_gate(o.to(x.dtype), gate).reshape(B, T, c.q_dim)
        return self.ops.linear(o, self.w[p + "attn_output.weight"])

    def norm_w(self, x: torch.Tensor, name: str) -> torch.Tensor:
        from qlab.kernels.attention import rms_norm

        return rms_norm(x, self.w[name], eps=self.cfg.rms_eps, unit_offset=False)

    def deltanet(self, x: torch.Tensor, i: int, st: DecodeState) -> torch.Tensor:
        c, p = self.cfg, f"blk.{i}."
        B, T, _ = x.shape
        H, HV, K, V = c.lin_k_heads, c.lin_v_heads, c.lin_k_dim, c.lin_v_dim
        # qkv [B, T, conv_dim], z [B, T, HV * V], b and a [B, T, HV]
        qkv, z, b, a = self.ops.linears(x, [self.w[p + n] for n in ("attn_qkv.weight", "attn_gate.weight",
                                                                     "ssm_beta.weight", "ssm_alpha.weight")])
        small = [st.conv[i], self.w[p + "ssm_conv1d.weight"], self.w[p + "ssm_a"], self.w[p + "ssm_dt.bias"],
                 self.w[p + "ssm_norm.weight"], st.rec[i]]
        if T == 1 and self.ops.fused_deltanet_step(qkv, z, b, a, *small, heads=(H, HV, K, V)):   # one C call
            o = self.ops.deltanet_decode_layer(qkv, z, b, a, *small, H, c.rms_eps)
            return self.ops.linear(o, self.w[p + "ssm_out.weight"])
        qkv = self.ops.conv(qkv, self.w[p + "ssm_conv1d.weight"], st.conv[i])
        with self.ops.other():
            q = l2_normalize(qkv[..., :c.key_dim].reshape(B, T, H, K), c.rms_eps)
            k = l2_normalize(qkv[..., c.key_dim:2 * c.key_dim].reshape(B, T, H, K), c.rms_eps)
            v = qkv[..., 2 * c.key_dim:].reshape(B, T, HV, V)
            g = gdn_gate(a.float(), self.w[p + "ssm_a"], self.w[p + "ssm_dt.bias"])  # log decay <= 0
            beta = torch.sigmoid(b.float())
            if self.perm:       # tiled (GGUF) -> grouped (kernel) value-head order
                v = tiled_to_grouped(v, H)
                g, beta = (tiled_to_grouped(t[..., None], H)[..., 0] for t in (g, beta))
        o = self.ops.delta_rule(q, k, v, g, beta, st.rec[i], scale=K ** -0.5, l2norm=False)  # [B, T, HV, V]
        with self.ops.other():
            if self.perm:
                o = grouped_to_tiled(o, H)
            o = self.norm_w(o, p + "ssm_norm.weight") * elementwise.silu(z).view(B, T, HV, V)
            o = o.reshape(B, T, HV * V)
        return self.ops.linear(o, self.w[p + "ssm_out.weight"])

    # ---- the forward pass -----------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, st: DecodeState, all_logits: bool = False, hidden: bool = False):
        """tokens [B, T] -> logits [B, T, vocab] (all_logits) or [B, vocab] for the last position (fp32); with
        `hidden`, (logits, the output-normed hidden states [B, T, H]) for the MTP block. Advances `st` by T."""
        c = self.cfg
        T = tokens.shape[1]
        if st.pos + T > st.max_context:
            raise QlabError(f"context {st.pos + T} tokens exceeds the cache of {st.max_context} tokens "
                            f"(allocate the state with a larger max_context)")
        with self.ops.small_ops_single_threaded(T == 1):
            return self._forward(tokens, st, all_logits, hidden)

    def block(self, x: torch.Tensor, i: int, st: DecodeState, pos0: int | None = None) -> torch.Tensor:
        """One decoder block: x + mixer(norm(x)), then + ffn(post_norm(.)). The MTP block is an attention one."""
        p = f"blk.{i}."
        h = self.norm(x, p + "attn_norm.weight")
        if i == self.mtp_block or self.cfg.is_attention(i):
            h = self.attention(h, i, st, pos0)
        else:
            h = self.deltanet(h, i, st)
        with self.ops.other():   # the residual add and the norm after it, one pass
            x, h = elementwise.rms_norm(x, self.w[p + "post_attention_norm.weight"], self.cfg.rms_eps,
                                        residual=h)
        h = self.ffn(h, p)
        with self.ops.other():
            return x + h

    def _forward(self, tokens: torch.Tensor, st: DecodeState, all_logits: bool, hidden: bool = False):
        c = self.cfg
        T = tokens.shape[1]
        with self.ops.section("head"):
            x = self.ops.embed(tokens, self.w["token_embd.weight"])
        for i in range(c.n_layers):
            x = self.block(x, i, st)
        st.pos += T
        if not all_logits and not hidden:
            x = x[:, -1]
        with self.ops.section("head"):   # the fixed cost a layer slice carries whatever its length
            x = self.norm(x, "output_norm.weight")
            logits = self.ops.linear(x if all_logits or not hidden else x[:, -1], self.w["output.weight"]).float()
        return (logits, x) if hidden else logits

    def mtp(self, hidden: torch.Tensor, next_tokens: torch.Tensor, st: DecodeState) -> torch.Tensor:
        """The MTP block: hidden [B, T, H] (the main model's output-normed states at positions t) with the tokens
        that follow them [B, T] -> draft logits [B, vocab] for the token after the last one. Position t's pair
        goes into the block's own KV cache at t (st.mtp_pos onwards), as in vLLM's Qwen3.5 MTP:
        x = eh_proj([enorm(embed(next)) | hnorm(hidden)]); block; shared_head_norm; the main model's head."""
        if self.mtp_block is None:
            raise QlabError("these weights have no MTP block (synthetic: mtp=True; GGUF: blk.N.nextn.* tensors)")
        T = next_tokens.shape[1]
        if st.mtp_pos + T > st.max_context:
            raise QlabError(f"context {st.mtp_pos + T} tokens exceeds the cache of {st.max_context} tokens")
        p = f"blk.{self.mtp_block}.nextn."
        with self.ops.small_ops_single_threaded(T == 1), self.ops.section("mtp"):
            e = self.norm(self.ops.embed(next_tokens, self.w["token_embd.weight"]), p + "enorm.weight")
            h = self.norm(hidden.to(e.dtype), p + "hnorm.weight")
            with self.ops.other():
                u = torch.cat([e, h], dim=-1)
            x = self.block(self.ops.linear(u, self.w[p + "eh_proj.weight"]), self.mtp_block, st, st.mtp_pos)
            st.mtp_pos += T
            x = self.norm(x[:, -1], p + "shared_head_norm.weight")
            return self.ops.linear(x, self.w["output.weight"]).float()


def l2_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(|x|² + eps) over the last dim (fla's convention), computed as llama.cpp's qwen35 graph does: an
    RMSNorm with eps / K (the mean square summed in double, the mean in float), then a scale by K^-1/2."""
    K = x.shape[-1]
    mean = ((x * x).double().sum(-1, keepdim=True) / K).float()
    return x * (1 / (mean + torch.tensor(eps / K, dtype=torch.float32)).sqrt()) * torch.tensor(K ** -0.5,
                                                                                           dtype=torch.float32)


# ---- the loop ----------------------------------------------------------------------------------------------
def prefill(model: Qwen35, tokens: torch.Tensor, st: DecodeState, all_logits: bool = False) -> torch.Tensor:
    """Run a prompt [B, T] through the model in one pass; returns the last position's logits [B, vocab]
    (or every position's, [B, T, vocab])."""
    return model.forward(tokens, st, all_logits=all_logits)


def decode_one_token(model: Qwen35, token: torch.Tensor, st: DecodeState) -> torch.Tensor:
    """token [B] (or [B, 1]) -> logits [B, vocab]."""
    return model.forward(token.reshape(-1, 1), st)


def decode_n_tokens(model: Qwen35, token: torch.Tensor, st: DecodeState, n: int) -> torch.Tensor:
    """Greedy decode of n tokens after `token` [B]; returns them [B, n]. The argmax stays on the device, so
    nothing waits inside the loop."""
    out = []
    for _ in range(n):
        logits = decode_one_token(model, token, st)
        token = logits.argmax(-1)
        out.append(token)
    return torch.stack(out, dim=1)
