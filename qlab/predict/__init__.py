"""The predictor: decode/prefill speed and memory for (device, model, quant, context, batch). Torch-free.

    from qlab.predict import predict
    predict("rtx-3090", "qwen3.6-27b", "Q4_K_M", 4096)   # -> the `qlab predict --json` object (README.md here)
"""

from qlab.predict.core import breakdown, predict, predict_many
from qlab.predict.efficiency import Efficiencies, device_class, efficiencies_from_profile

__all__ = ["Efficiencies", "breakdown", "device_class", "efficiencies_from_profile", "predict", "predict_many"]
