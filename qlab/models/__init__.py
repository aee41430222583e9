"""Model presets (`presets/*.toml`), per-tensor quant mixes and memory accounting. Torch-free."""

from qlab.models.loader import all_presets, get_model, load_preset
from qlab.models.preset import AttentionSpec, DeltaNetSpec, FFNSpec, ModelPreset

__all__ = ["AttentionSpec", "DeltaNetSpec", "FFNSpec", "ModelPreset", "all_presets", "get_model", "load_preset"]
