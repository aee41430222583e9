"""Load and validate model presets from `qlab/models/presets/<id>.toml` (torch-free).

A malformed preset raises QlabError naming the file and the field, so a typo in a data file never turns
into a silently wrong prediction.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from qlab.errors import QlabError, unknown
from qlab.models.preset import ATTENTION, DELTANET, SLIDING, AttentionSpec, DeltaNetSpec, FFNSpec, ModelPreset

PRESET_DIR = Path(__file__).parent / "presets"


class _Fields:
    """Typed access to one TOML table; every error names the file and the dotted field."""

    def __init__(self, path: Path, table: dict, prefix: str = ""):
        self.path, self.table, self.prefix = path, table, prefix

    def _fail(self, key: str, msg: str) -> QlabError:
        return QlabError(f"model preset {self.path.name}: field {self.prefix}{key}: {msg}")

    def get(self, key: str, typ: type, default=..., minimum: float | None = None):
        if key not in self.table:
            if default is ...:
                raise self._fail(key, "missing")
            return default
        v = self.table[key]
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise self._fail(key, f"expected {typ.__name__}, got {type(v).__name__} {v!r}")
        if minimum is not None and v < minimum:
            raise self._fail(key, f"must be >= {minimum}, got {v!r}")
        return v

    def sub(self, key: str, required: bool = True) -> "_Fields | None":
        if key not in self.table:
            if required:
                raise self._fail(key, "missing table")
            return None
        if not isinstance(self.table[key], dict):
            raise self._fail(key, "expected a table")
        return _Fields(self.path, self.table[key], f"{self.prefix}{key}.")


def _layer_types(f: _Fields, n_layers: int, has_deltanet: bool, window: int) -> tuple[str, ...]:
    every = f.get("full_attention_every", int, 1, minimum=1)
    other = f.get("other", str, "")
    if every > 1 and other not in (SLIDING, DELTANET):
        raise f._fail("other", f"expected 'sliding' or 'deltanet' when full_attention_every > 1, got {other!r}")
    if other == DELTANET and not has_deltanet:
        raise f._fail("other", "'deltanet' layers need a [deltanet] table")
    if other == SLIDING and window <= 0:
        raise f._fail("other", "'sliding' layers need attention.sliding_window > 0")
    return tuple(ATTENTION if (i + 1) % every == 0 else other for i in range(n_layers))


def load_preset(path: Path) -> ModelPreset:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise QlabError(f"model preset {path.name}: cannot read: {e}") from None
    f = _Fields(path, raw)
    a = f.sub("attention")
    attention = AttentionSpec(
        heads=a.get("heads", int, minimum=1), kv_heads=a.get("kv_heads", int, minimum=1),
        head_dim=a.get("head_dim", int, minimum=1), qkv_bias=a.get("qkv_bias", bool, False),
        output_bias=a.get("output_bias", bool, False), qk_norm=a.get("qk_norm", bool, False),
        output_gate=a.get("output_gate", bool, False), sinks=a.get("sinks", bool, False),
        sliding_window=a.get("sliding_window", int, 0, minimum=0))
    if attention.heads % attention.kv_heads:
        raise a._fail("kv_heads", f"{attention.kv_heads} does not divide heads {attention.heads}")
    d = f.sub("deltanet", required=False)
    deltanet = None if d is None else DeltaNetSpec(
        key_heads=d.get("key_heads", int, minimum=1), value_heads=d.get("value_heads", int, minimum=1),
        key_head_dim=d.get("key_head_dim", int, minimum=1), value_head_dim=d.get("value_head_dim", int, minimum=1),
        conv_kernel=d.get("conv_kernel", int, minimum=1))
    if deltanet and deltanet.value_heads % deltanet.key_heads:
        raise d._fail("value_heads", f"{deltanet.value_heads} is not a multiple of key_heads {deltanet.key_heads}")
    ff = f.sub("ffn")
    kind = ff.get("kind", str)
    if kind == "dense":
        ffn = FFNSpec("dense", intermediate_size=ff.get("intermediate_size", int, minimum=1))
    elif kind == "moe":
        ffn = FFNSpec("moe", experts=ff.get("experts", int, minimum=1),
                      active_experts=ff.get("active_experts", int, minimum=1),
                      expert_intermediate_size=ff.get("expert_intermediate_size", int, minimum=1),
                      shared_experts=ff.get("shared_experts", int, 0, minimum=0),
                      shared_intermediate_size=ff.get("shared_intermediate_size", int, 0, minimum=0),
                      expert_bias=ff.get("expert_bias", bool, False))
        if ffn.active_experts > ffn.experts:
            raise ff._fail("active_experts", f"{ffn.active_experts} > experts {ffn.experts}")
        if ffn.shared_experts and not ffn.shared_intermediate_size:
            raise ff._fail("shared_intermediate_size", "missing (shared_experts > 0)")
    else:
        raise ff._fail("kind", f"expected 'dense' or 'moe', got {kind!r}")
    n_layers = f.get("n_layers", int, minimum=1)
    sources = raw.get("sources", {})
    if not isinstance(sources, dict) or not sources.get("config"):
        raise f._fail("sources.config", "every preset must name the source of its values")
    preset = ModelPreset(
        id=f.get("id", str), name=f.get("name", str), hf_repo=f.get("hf_repo", str), gguf_arch=f.get("gguf_arch", str),
        n_layers=n_layers, hidden_size=f.get("hidden_size", int, minimum=1), vocab_size=f.get("vocab_size", int, minimum=1),
        tied_embeddings=f.get("tied_embeddings", bool), max_context=f.get("max_context", int, minimum=1),
        layer_types=_layer_types(f.sub("layers"), n_layers, deltanet is not None, attention.sliding_window),
        attention=attention, ffn=ffn, deltanet=deltanet,
        max_context_scaled=f.get("max_context_scaled", int, None, minimum=1), norm_eps=f.get("norm_eps", float, 1e-6),
        norms_per_layer=f.get("norms_per_layer", int, 2, minimum=0), mtp_layers=f.get("mtp_layers", int, 0, minimum=0),
        params_published_b=f.get("params_published_b", float, None),
        params_derived_b=f.get("params_derived_b", float, None),
        active_params_published_b=f.get("active_params_published_b", float, None),
        native_dtype=f.get("native_dtype", str, "BF16"), sources={str(k): str(v) for k, v in sources.items()})
    if preset.id != path.stem:
        raise f._fail("id", f"{preset.id!r} differs from the file name {path.stem!r}")
    return preset


@lru_cache(maxsize=1)
def model_ids() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))


@lru_cache(maxsize=None)
def _load_id(model_id: str) -> ModelPreset:
    return load_preset(PRESET_DIR / f"{model_id}.toml")


def all_presets() -> dict[str, ModelPreset]:
    return {i: _load_id(i) for i in model_ids()}


def get_model(model_id: str | ModelPreset) -> ModelPreset:
    """The preset for `model_id` (case-insensitive); unknown ids raise QlabError naming the closest ones.
    Only the asked-for file is parsed."""
    if isinstance(model_id, ModelPreset):
        return model_id
    key = model_id.strip().lower() if isinstance(model_id, str) else ""
    if key in model_ids():
        return _load_id(key)
    alias = _aliases().get(key)   # a Hugging Face repo or display name, e.g. "Qwen/Qwen3.6-27B"
    if alias is None:
        raise unknown("model", str(model_id), model_ids())
    return _load_id(alias)


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    out = {}
    for m in all_presets().values():
        out[m.name.lower()] = m.id
        out[m.hf_repo.split(" ")[0].lower()] = m.id
    return out
