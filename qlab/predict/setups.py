"""The setups people run beside plain batch-1 decode on one device, as cost models over `core.step_parts`:
MTP speculative decoding, several GPUs (tensor parallel or a layer split), partial offload to the host,
and many sequences at once (concurrency). Written once here; `predict()` and the report both use them.

Every model returns seconds by term, each with its basis: "calibrated"/"measured"/"roofline" (the
device's efficiencies), "fitted" (a setup parameter fitted on the published rows in
`data/setups_published.csv`), "given" (the user's number), "published" (a default read off published
measurements) or "assumed" (no row pins it). README.md states the formulas and the errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from qlab.errors import QlabError

SPLITS = ("layer", "tensor")
# One direction of a x16 link, GB/s (PCI-SIG: 8/16/32 GT/s per lane, 128b/130b). NVLink: the device's own.
PCIE_GBS = {"pcie3": 15.75, "pcie4": 31.5, "pcie5": 63.0}
LINKS = (*PCIE_GBS, "nvlink")
ACT_BYTES = 2                 # fp16/bf16 hidden state handed between GPUs
HOP_US = 20.0                 # layer split: one device-to-device copy and sync per boundary (assumed, not fitted)
LAYER_IMBALANCE = 1.05        # layer split: the output matrix lands on the last GPU, so its share is larger
MAX_GPUS = 16
# MTP acceptance (accepted / drafted) by draft count, the median of the published llama.cpp draft-mtp rows
# on Qwen3.6/3.8-class 27B models (data/setups_published.csv: 28 rows at 2 drafts, 8 at 3, 16 at 4; none at
# 1 draft, whose 0.85 is assumed); beyond 4 drafts it keeps falling ~0.06/draft.
DEFAULT_ACCEPTANCE = {1: 0.85, 2: 0.74, 3: 0.72, 4: 0.63}
# The host's memory bandwidth when neither --host-bw nor a profile of the host gives it: dual-channel
# DDR5-5200 (2 x 8 B x 5.2 GT/s), a typical 2024-26 desktop. Assumed.
DEFAULT_HOST_BW_GBS = 83.2
# Its cores that run offloaded layers when --host-threads does not say: 8 performance cores (assumed).
DEFAULT_HOST_CORES = 8
AUTO = -1                     # gpu_layers: as many layers as fit (llama.cpp -fit)
HOST_LAYER_US = 2.0           # per-layer fixed time on the host CPU (no kernel launch), as the cpu class
HOST_EFF = 0.75 / 1.4         # host streaming share of RAM bandwidth when no fit gives it (assumed)
HOST_CORE_GBS = 5.0           # GB/s of weights one host core dequantizes and dots when no fit gives it (assumed)


@dataclass(frozen=True)
class Setup:
    """How the model is run. The defaults are plain single-device decode (predict()'s contract)."""
    gpus: int = 1
    split: str = "layer"              # "layer" (llama.cpp default) | "tensor" (vLLM/SGLang, llama.cpp -sm tensor)
    link: str | None = None           # pcie3|pcie4|pcie5|nvlink; None: the device's own PCIe generation
    mtp: bool = False
    draft: int = 2                    # MTP draft tokens per step (llama.cpp --spec-draft-n-max)
    acceptance: float | None = None   # accepted / drafted; None: DEFAULT_ACCEPTANCE
    gpu_layers: int | None = None     # llama.cpp -ngl (layers on the GPU; n_layers + 1 = all and the output
                                      # layer); None: no offload; AUTO: as many as fit
    host_bw_gbs: float | None = None  # host RAM bandwidth for offloaded layers
    host_cores: int | None = None     # host CPU cores that run the offloaded layers (llama.cpp -t; its
                                      # default is the physical performance cores); None: DEFAULT_HOST_CORES

    @property
    def plain(self) -> bool:
        return self.gpus == 1 and not self.mtp and self.gpu_layers is None

    def as_dict(self) -> dict:
        out = {"gpus": self.gpus}
        if self.gpus > 1:
            out |= {"split": self.split, "link": self.link}
        if self.mtp:
            out |= {"mtp": True, "draft": self.draft, "acceptance": self.acceptance}
        if self.gpu_layers is not None:
            out["gpu_layers"] = self.gpu_layers
            if self.host_cores is not None:
                out["host_cores"] = self.host_cores
        return out


def check_setup(s: Setup, dev, m) -> None:
    """Combinations that make no sense get one clear line (QlabError, exit 2)."""
    if not isinstance(s.gpus, int) or not 1 <= s.gpus <= MAX_GPUS:
        raise QlabError(f"--gpus: expected an integer from 1 to {MAX_GPUS}, got {s.gpus!r}")
    if s.split not in SPLITS:
        raise QlabError(f"--split: expected one of {', '.join(SPLITS)}, got {s.split!r}")
    if s.link is not None and s.link not in LINKS:
        raise QlabError(f"--link: expected one of {', '.join(LINKS)}, got {s.link!r}")
    if s.gpus > 1 and dev.kind != "gpu":
        raise QlabError(f"--gpus {s.gpus}: {dev.id} is a {dev.kind} device, not a card that can be paired "
                        "(several GPUs are modelled for discrete cards only)")
    if s.gpus == 1 and s.link is not None:
        raise QlabError("--link: only meaningful with --gpus 2 or more")
    if s.link == "nvlink" and not dev.peer_link_gbs:
        raise QlabError(f"--link nvlink: {dev.id} has no NVLink/peer link in the hwdb; use pcie3/pcie4/pcie5")
    if s.split == "tensor" and s.gpus > 1:
        heads = m.attention.heads
        if heads % s.gpus or (m.deltanet is not None and m.deltanet.value_heads % s.gpus):
            raise QlabError(f"--split tensor --gpus {s.gpus}: {m.id}'s {heads} attention heads"
                            + (f" / {m.deltanet.value_heads} DeltaNet value heads" if m.deltanet else "")
                            + f" do not divide over {s.gpus} GPUs (use a divisor, or --split layer)")
    if s.mtp:
        if not getattr(m, "mtp_layers", 0):
            raise QlabError(f"--mtp: {m.id} has no MTP layer (multi-token prediction needs one in the model)")
        if not isinstance(s.draft, int) or not 1 <= s.draft <= 16:
            raise QlabError(f"--draft: expected an integer from 1 to 16, got {s.draft!r}")
        if s.acceptance is not None and not 0.0 <= s.acceptance <= 1.0:
            raise QlabError(f"--acceptance: expected a fraction from 0 to 1, got {s.acceptance!r}")
    if s.gpu_layers is not None:
        if dev.kind != "gpu":
            raise QlabError(f"--gpu-layers/--offload-layers: {dev.id} is a {dev.kind} device; the weights "
                            "already live in the memory it computes from (nothing to offload)")
        if s.gpus > 1:
            raise QlabError("--gpu-layers/--offload-layers with --gpus > 1 is not modelled (offload is one GPU + host)")
        if not isinstance(s.gpu_layers, int) or not AUTO <= s.gpu_layers <= m.n_layers + 1:
            raise QlabError(f"--gpu-layers: expected 0..{m.n_layers + 1} for {m.id} "
                            f"({m.n_layers} layers + the output layer), got {s.gpu_layers!r}")
    if s.host_bw_gbs is not None and not s.host_bw_gbs > 0:
        raise QlabError(f"--host-bw: expected a positive bandwidth in GB/s, got {s.host_bw_gbs!r}")
    if s.host_cores is not None and (not isinstance(s.host_cores, int) or s.host_cores < 1):
        raise QlabError(f"host_cores: expected a positive whole number of CPU cores, got {s.host_cores!r}")


def acceptance(s: Setup) -> tuple[float, str]:
    if s.acceptance is not None:
        return float(s.acceptance), "given"
    if s.draft in DEFAULT_ACCEPTANCE:
        return DEFAULT_ACCEPTANCE[s.draft], "published"
    return max(0.2, DEFAULT_ACCEPTANCE[4] - 0.06 * (s.draft - 4)), "published"


def link_gbs(dev, link: str | None) -> tuple[float, str]:
    """(GB/s one direction, the link's name) between two of these cards."""
    if link == "nvlink":
        return dev.peer_link_gbs / 2, "nvlink"   # the hwdb's peer figures are both directions together
    if link in PCIE_GBS:
        return PCIE_GBS[link], link
    gbs = dev.host_link_gbs or PCIE_GBS["pcie4"]
    name = min(PCIE_GBS, key=lambda k: abs(PCIE_GBS[k] - gbs))
    return gbs, name


# ---- the terms --------------------------------------------------------------------------------------


def mem_s(p: dict) -> float:
    return p["weights_s"] + p["dequant_s"] + p["kv_s"] + p["state_s"]


def multi_gpu(p: dict, s: Setup, dev, m, params: dict) -> dict[str, tuple[float, str]]:
    """Tensor parallel: every GPU streams 1/n of each layer, then the hidden state is all-reduced twice per
    layer (after attention/DeltaNet and after the FFN): a ring of 2(n-1) steps, each a latency plus
    hidden·2 B/n over the link. Layer split: the GPUs run one after another, so the step is the single
    device's, plus one hand-off of the hidden state per boundary."""
    n = s.gpus
    gbs, name = link_gbs(dev, s.link)
    hidden = m.hidden_size
    if s.split == "tensor":
        key = "nvlink" if name == "nvlink" else "pcie"
        lat_us, basis = params.get(f"allreduce_step_us_{key}", (None, None)) or (None, None)
        if lat_us is None:
            lat_us, basis = (8.0, "assumed") if key == "nvlink" else (15.0, "assumed")
        per_allreduce = 2 * (n - 1) * (lat_us * 1e-6 + ACT_BYTES * hidden / n / (gbs * 1e9))
        n_allreduce = 2 * m.n_layers
        return {"tp_share_s": (-(1 - 1 / n) * (mem_s(p) + p["layer_overhead_s"]), "roofline"),
                "allreduce_s": (n_allreduce * per_allreduce, basis)}
    lat_us, basis = params.get("hop_us", (None, None)) or (None, None)
    if lat_us is None:
        lat_us, basis = HOP_US, "assumed"
    return {"hop_s": ((n - 1) * (lat_us * 1e-6 + ACT_BYTES * hidden / (gbs * 1e9)), basis)}


def layer_split_prompt_s(s: Setup, dev, m, tokens: int) -> float:
    """A layer split hands the whole prompt's hidden states over each GPU boundary once (added to TTFT)."""
    gbs, _ = link_gbs(dev, s.link)
    return (s.gpus - 1) * (ACT_BYTES * m.hidden_size * tokens / (gbs * 1e9) + HOP_US * 1e-6)


def mtp(p: dict, step, dev, eff, m, s: Setup, t_step: float, params: dict) -> tuple[float, dict]:
    """Expected seconds per generated token with MTP, and its terms. One cycle: `draft` passes of the MTP
    block (one attention layer + FFN) and the output head, one verification of draft+1 tokens (weights
    read once; each extra token costs the small-batch matvec ALU term), a checkpoint of the DeltaNet
    state (and its restore when a draft token is rejected). Tokens per cycle: 1 + draft·acceptance."""
    a, a_basis = acceptance(s)
    n = s.draft
    bw = dev.mem_bandwidth_gbs * 1e9
    L = m.n_layers
    # the MTP block is about one layer of the trunk plus its projection of [embedding; hidden]; the head is
    # the model's output matrix (shared). Bytes at the step's own per-family mix, scaled.
    w_bytes = sum(step.weight_bytes.values())
    head = step.output_bytes
    per_weight = (w_bytes - head) / max(1.0, step.token_flops / 2)          # average bytes per weight
    layer_bytes = (w_bytes - head) / L + 2 * m.hidden_size * m.hidden_size * per_weight
    frac = (layer_bytes + head) / max(1.0, w_bytes)
    t_draft = frac * (p["weights_s"] + p["dequant_s"]) + p["kv_s"] / max(1, step.n_attention) \
        + 2 * eff.layer_overhead_s
    t_verify = t_step + n * p["token_alu_s"]
    ckpt = 2 * step.state_bytes / (bw * eff.weights)           # save the state (read + write)
    t_cycle = n * t_draft + t_verify + ckpt + (1 - a ** n) * ckpt
    tokens = 1 + n * a
    terms = {"mtp_draft_s": (n * t_draft, "roofline" if eff.source == "roofline" else eff.source),
             "mtp_verify_extra_s": (n * p["token_alu_s"], params.get("token_alu_basis", "assumed")),
             "mtp_state_checkpoint_s": (ckpt * (2 - a ** n), eff.source),
             "mtp_tokens_per_step": (tokens, a_basis)}
    return t_cycle / tokens, terms


def offload(p: dict, step, dev, m, s: Setup, host, usable_gb: float, mem, params: dict) -> tuple[float, dict, int, float]:
    """llama.cpp -ngl k: k of the n_layers + 1 layer slots go to the GPU from the top, the output layer
    first (llama-model.cpp: i_gpu_start = n_layer + 1 - k), so k >= 1 puts the output matrix and the last
    k - 1 blocks on the GPU and only k = n_layers + 1 the whole model. The rest run on the host CPU from host
    RAM; each side's bytes over its own rate (with the KV of a layer kept beside it), plus two PCIe hand-offs
    of the hidden state per token. Without -ngl, as many layers as fit. The token embedding stays on the
    host (a row lookup). Returns (seconds, terms, gpu_layers, GB on the GPU)."""
    L = m.n_layers
    w = sum(step.weight_bytes.values())
    head = step.output_bytes
    per_layer_gb = ((w - head) + mem.kv_cache_gb * 1e9 + mem.state_gb * 1e9) / L / 1e9
    g = s.gpu_layers
    if g == AUTO:  # as many slots as fit, the output layer's first
        room = usable_gb - mem.overhead_gb - head / 1e9
        g = 0 if room < 0 else 1 + max(0, min(L, int(room // per_layer_gb)))
    blocks = max(0, min(g, L + 1) - 1)
    on_gpu = blocks / L
    head_on_gpu = g >= 1
    host_gbs, host_basis, e_basis = host_stream_gbs(host, params)
    body = mem_s(p) - head / w * (p["weights_s"] + p["dequant_s"])
    t_head_gpu = head / w * (p["weights_s"] + p["dequant_s"])
    host_bytes = (1 - on_gpu) * ((w - head) + step.kv_bytes + step.state_bytes) + (0 if head_on_gpu else head)
    t_host = host_bytes / (host_gbs * 1e9) + (1 - on_gpu) * L * HOST_LAYER_US * 1e-6
    gbs, _ = link_gbs(dev, None)
    t_xfer = (2 * (ACT_BYTES * m.hidden_size / (gbs * 1e9) + 10e-6)) if 0 < on_gpu < 1 else 0.0
    t = on_gpu * (body + p["layer_overhead_s"]) + (t_head_gpu if head_on_gpu else 0.0) + t_host + t_xfer
    terms = {"gpu_s": (on_gpu * (body + p["layer_overhead_s"]) + (t_head_gpu if head_on_gpu else 0.0), "calibrated"),
             "host_s": (t_host, e_basis),
             "pcie_s": (t_xfer, "assumed"), "gpu_layers": (g, "given" if s.gpu_layers != AUTO else "fit"),
             "host_bw_gbs": (host.mem_bandwidth_gbs, host_basis), "host_cores": (host.cores, host.cores_basis),
             "host_stream_gbs": (host_gbs, e_basis)}
    gpu_gb = blocks * per_layer_gb + mem.overhead_gb + (head / 1e9 if head_on_gpu else 0.0)
    return t, terms, g, gpu_gb


def concurrency(fits_one, per_seq_gb: float, fixed_gb: float, usable_gb: float) -> int:
    """How many sequences fit beside the weights: (usable - weights - overhead) / (KV + state per sequence)."""
    if per_seq_gb <= 0:
        return 0
    return max(0, int((usable_gb - fixed_gb) // per_seq_gb))


# ---- applying a setup to one prediction ------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    mem_bandwidth_gbs: float
    basis: str
    cores: int = DEFAULT_HOST_CORES
    cores_basis: str = "assumed"


def host_stream_gbs(host: Host, params: dict) -> tuple[float, str, str]:
    """GB/s at which the host CPU streams offloaded weights through its dequantizing dot products: the
    lesser of a share `host_eff` of its RAM bandwidth and `host_core_gbs` per core (a dual-channel desktop
    runs out of bandwidth, a many-channel or a laptop host out of cores first).
    Returns (GB/s, the bandwidth's basis, the efficiencies' basis)."""
    e, e_basis = params.get("host_eff") or (None, None)
    if e is None:
        e, e_basis = HOST_EFF, "assumed"
    gbs = host.mem_bandwidth_gbs * e
    r, r_basis = params.get("host_core_gbs") or (None, None)
    if r is None:
        r, r_basis = HOST_CORE_GBS, "assumed"
    if host.cores * r < gbs:
        gbs, e_basis = host.cores * r, r_basis
    return gbs, host.basis, e_basis


def host_device(s: Setup) -> Host:
    """The host offloaded layers run on: --host-bw when given, else a typical desktop (assumed). The machine
    qlab runs on is not the user's host, so its own bandwidth is never used here."""
    cores = (s.host_cores, "given") if s.host_cores else (DEFAULT_HOST_CORES, "assumed")
    if s.host_bw_gbs:
        return Host(float(s.host_bw_gbs), "given", *cores)
    return Host(DEFAULT_HOST_BW_GBS, "assumed", *cores)


def fitted_params(cal: dict) -> dict[str, tuple[float, str]]:
    """The setup parameters calibration.json carries (fitted by qlab.predict.calibrate.setups)."""
    st = cal.get("setups") or {}
    out = {k: (float(v), "fitted") for k, v in st.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out["token_alu_basis"] = "fitted" if "token_alu_eff" in st else "assumed"
    return out


def apply(s: Setup, *, p: dict, step, dev, eff, m, t_step: float, mem, params: dict) -> dict:
    """Seconds per generated token under the setup, the terms with their bases, memory per GPU and fit."""
    terms: dict[str, tuple[float, str]] = {}
    t = t_step
    usable = dev.usable_memory_gb
    per_gpu = mem.total_gb
    fits = per_gpu <= usable
    if s.gpus > 1:
        extra = multi_gpu(p, s, dev, m, params)
        terms.update(extra)
        t += sum(v for v, _ in extra.values())
        shared = mem.weights_gb + mem.kv_cache_gb + mem.state_gb
        per_gpu = shared / s.gpus * (1.0 if s.split == "tensor" else LAYER_IMBALANCE) + mem.overhead_gb
        fits = per_gpu <= usable
    gpu_layers = None
    if s.gpu_layers is not None:
        t, off_terms, gpu_layers, per_gpu = offload(p, step, dev, m, s, host_device(s), usable, mem, params)
        terms.update(off_terms)
        fits = per_gpu <= usable
    t_token = t
    if s.mtp:
        r = t / t_step
        scaled = {k: v * r for k, v in p.items()}
        scaled["token_alu_s"] = p["token_alu_s"] * r
        t_token, mtp_terms = mtp(scaled, step, dev, eff, m, s, t, params)
        terms.update(mtp_terms)
    return {"t_token": t_token, "terms": terms, "per_gpu_gb": per_gpu, "fits": fits, "gpu_layers": gpu_layers}
