"""The per-op cost modules (`qlab/kernels/<op>/cost.py`), loaded without their package's __init__.

Those files are torch-free by contract, but a kernel package's __init__ may import torch (the attention
package imports its validators and rope helpers eagerly), and `import qlab.kernels.attention.cost` runs
that __init__ first. The predictor must answer without torch, so it loads the cost files by path and
registers them under their usual names: a later normal import gets the same module object.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import qlab.kernels

_KERNELS = Path(qlab.kernels.__file__).parent


def load_cost(op: str):
    name = f"qlab.kernels.{op}.cost"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, _KERNELS / op / "cost.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


attention_cost = load_cost("attention")
deltanet_cost = load_cost("deltanet")
matmul_cost = load_cost("dequant_matmul")
