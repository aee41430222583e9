"""What the report asks the predictor: the quants, contexts and KV dtypes it shows, and a memoized
`predict()` so a scenario that appears in several sections is predicted once and shows the same numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from qlab.errors import QlabError

MODEL = "qwen3.6-27b"
# A dense model of similar size: its decode speed falls with context (KV read grows in all 64 layers),
# where the hybrid's stays nearly flat (KV in 16 of 64 layers, DeltaNet state of fixed size).
DENSE_CONTRAST = "qwen3-32b"

# Highest quality first. The fit matrix shows them all; "best setup" is the first of BEST_QUANTS that fits:
# Q8_0 is near-lossless, and BF16 would double the bytes read per token (halve the speed) for no visible gain.
QUANTS = ["BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K"]
BEST_QUANTS = QUANTS[1:]
SUMMARY_CONTEXTS = [4096, 32768, 131072, 262144]
KV_DTYPES = ["F16", "Q8_0"]
CURVE_QUANTS = ["Q8_0", "Q6_K", "Q4_K_M"]
CURVE_CONTEXTS = [1024, 4096, 8192, 16384, 32768, 65536, 131072, 196608, 262144]
PROMPT_TOKENS = 4096          # "time to first token for a 4K prompt"
HEADLINE_QUANT = "Q4_K_M"     # the quant most people run; used where one quant must stand for all
HEADLINE_CONTEXT = 32768


@dataclass
class Predictions:
    """A cache in front of `qlab.predict.predict`: key -> the predictor's dict, or None where the predictor
    refuses the scenario (e.g. a context beyond a model's maximum), with the refusal kept in `refused`."""

    profiles_by_hw: dict[str, dict] = field(default_factory=dict)
    devices: dict[str, object] = field(default_factory=dict)  # id -> Device for devices the hwdb cannot resolve
    cache: dict[tuple, dict | None] = field(default_factory=dict)
    refused: dict[tuple, str] = field(default_factory=dict)

    def get(self, hw: str, quant: str, context: int, kv_dtype: str = "F16", model: str = MODEL,
            batch: int = 1) -> dict | None:
        key = (hw, model, quant, context, kv_dtype, batch)
        if key not in self.cache:
            from qlab.predict import predict  # looked up per call so tests can substitute the predictor

            try:
                p = predict(self.devices.get(hw, hw), model, quant, context, batch=batch, kv_dtype=kv_dtype,
                            profile=self.profiles_by_hw.get(hw))
                # "m4-max-40c@64" comes back as hw "m4-max-40c": keep the name asked, which says which option
                self.cache[key] = p if p["hw"] == hw else {**p, "hw": hw}
            except QlabError as e:
                self.cache[key] = None
                self.refused[key] = str(e)
        return self.cache[key]

    def best(self, hw: str, context: int, model: str = MODEL) -> tuple[dict, str] | None:
        """The highest-quality weight quant that fits at `context`, with its KV cache in F16 if that fits, else
        in Q8_0 (an 8-bit KV cache costs far less quality than a smaller weight quant)."""
        for quant in BEST_QUANTS:
            for kv in KV_DTYPES:
                p = self.get(hw, quant, context, kv, model)
                if p is not None and p["fits"]:
                    return p, kv
        return None
