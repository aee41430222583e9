"""TunableOp: what the tuner needs to know about one (op, impl) pair.

A subclass names its shape dimensions (with Qwen3.6-27B defaults), which of them are bucketed, its byte and
FLOP counts, how to make inputs, run the impl and run the reference. The search space and constraint come
from the kernel package's `tunables.py`; CPU impls get one more parameter, `threads`, applied with
torch.set_num_threads around each evaluation and restored afterwards.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from qlab import measure
from qlab.kernels.cost import OpCost
from qlab.tune.cache import source_hash, source_hash_of  # noqa: F401 - source_hash: re-exported
from qlab.tune.space import Config, Space

# Rough peak rates for ranking only (the search measures): what matters is the ratio of memory to compute.
CPU_GBS, CPU_GFLOPS_PER_CORE = 20.0, 30.0
GPU_GBS, GPU_TFLOPS = 1000.0, 100.0
CPU_OVERHEAD_S, GPU_OVERHEAD_S = 20e-6, 4e-6   # CPU: per tile/chunk the impl loops over; GPU: per launch
GPU_SMS = 108                                    # an A100-class count; only the shape of the curve matters
SPLIT_PARAMS = ("num_splits", "SPLIT_K", "KSPLIT")   # parameters that split the reduction over more programs


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def thread_choices(n_cpus: int | None = None) -> list[int]:
    """1, 2, 4, ... up to the CPU count, and the CPU count itself."""
    n = n_cpus or os.cpu_count() or 1
    out, t = [], 1
    while t < n:
        out.append(t)
        t *= 2
    return out + [n]


torch_threads = measure.threads   # run with `n` intra-op threads, then put back what was there


def _device_kind(op: str, impl: str) -> str:
    """"cpu" or "cuda": where the registry says the impl runs (an op outside the registry, the tuner's own
    self-test op, runs on the CPU)."""
    from qlab.kernels import registry

    if op not in registry.ops():
        return "cpu"
    return "cpu" if "cpu" in registry.get(op, impl).devices else "cuda"


class TunableOp:
    op: str = ""                       # op name the user types: "deltanet", "attention_decode", ...
    dims: dict[str, Any] = {}          # shape dimension -> default (Qwen3.6-27B)
    seq_dims: tuple[str, ...] = ()     # bucketed to the next power of two
    presets: dict[str, list[dict[str, Any]]] = {}   # preset name -> shape overrides
    tile_dims: dict[str, str] = {}     # tunable parameter -> the shape dim it tiles (for the cost model)
    grid_params: tuple[str, ...] = ()     # tile params that make separate GPU programs (others tile a loop)
    parallel_dims: tuple[str, ...] = ()   # dims each a separate GPU program (batch, heads)
    package: str = ""                  # kernel package, e.g. "qlab.kernels.deltanet"
    entry: str = ""                    # "module:function" that must import for the op to be present
    rms_tol: dict[str, float] = {"fp32": 2e-3, "bf16": 1e-2, "fp16": 1e-2}

    def __init__(self, impl: str, params: Mapping[str, list], defaults: Mapping[str, Any],
                 valid: Callable[[str, Config, dict], bool] | None = None):
        self.impl = impl
        self.device_kind = _device_kind(self.op, impl)
        self.params = {k: list(v) for k, v in params.items()}
        self.defaults = dict(defaults)
        if self.device_kind == "cpu":
            import torch  # the default thread count is torch's own choice on this machine

            self.params["threads"] = thread_choices()
            self.defaults.setdefault("threads", torch.get_num_threads())
            if self.defaults["threads"] not in self.params["threads"]:
                self.params["threads"] = sorted(set(self.params["threads"]) | {self.defaults["threads"]})
        self._valid = valid

    @property
    def name(self) -> str:
        return f"{self.op}/{self.impl}"

    # -- shapes ---------------------------------------------------------------------------------------------
    def full_shape(self, shape: Mapping[str, Any] | None, device: str = "cpu") -> dict[str, Any]:
        out = dict(self.dims)
        out.setdefault("dtype", "fp32" if device == "cpu" else "bf16")
        out.update(shape or {})
        return out

    def bucket(self, shape: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (next_pow2(v) if k in self.seq_dims else v) for k, v in sorted(shape.items())}

    # -- the space ------------------------------------------------------------------------------------------
    def kernel_config(self, config: Config) -> Config:
        return {k: v for k, v in config.items() if k != "threads"}

    def is_valid(self, config: Config, shape: Mapping[str, Any]) -> bool:
        if self._valid is None:
            return True
        return bool(self._valid(self.impl, self.kernel_config(config), self.valid_shape(shape)))

    def valid_shape(self, shape: Mapping[str, Any]) -> dict[str, Any]:
        """The shape dict the package's valid() reads (subclasses add derived keys)."""
        return dict(shape)

    def space(self, shape: Mapping[str, Any]) -> Space:
        return Space(self.params, lambda c: self.is_valid(c, shape), name=f"{self.name} at {dict(shape)}")

    # -- cost ------------------------------------------------------------------------------------------------
    def cost(self, shape: Mapping[str, Any], config: Config | None = None) -> OpCost:
        raise NotImplementedError

    def cost_model(self, config: Config, shape: Mapping[str, Any], device: str = "cpu") -> float:
        """Predicted seconds, for ranking only (the search measures): the roofline time of the op's bytes and
        FLOPs at rough peak rates, inflated by the work wasted padding each tiled dim up to its tile, plus a
        fixed cost per tile (so very small tiles lose). CPU: the compute share divides among the threads with
        diminishing returns. GPU: programs (tiles x parallel dims x splits) fewer than the SMs leave the
        rest idle, and a partial last wave costs a whole one."""
        c = self.cost(shape, config)
        tiles, grid, waste = 1, 1, 1.0
        for param, dim in self.tile_dims.items():
            block, size = config.get(param), shape.get(dim)
            if isinstance(block, int) and block > 0 and isinstance(size, int) and size > 0:
                n = math.ceil(size / block)
                tiles *= n
                grid *= n if param in self.grid_params else 1
                waste *= n * block / size
        if device == "cpu":
            threads = config.get("threads") or 1
            eff = min(threads, os.cpu_count() or 1) ** 0.8
            t = max(c.bytes / (CPU_GBS * 1e9), c.flops / (CPU_GFLOPS_PER_CORE * 1e9 * eff))
            return t * waste + CPU_OVERHEAD_S * tiles
        programs = grid * math.prod(int(shape.get(d, 1)) for d in self.parallel_dims)
        split = next((config[p] for p in SPLIT_PARAMS if p in config), 1)
        split = split if split > 0 else max(1, 2 * GPU_SMS // programs)   # 0: the kernel picks (auto)
        programs *= split
        occupancy = programs / (math.ceil(programs / GPU_SMS) * GPU_SMS)
        return c.time_s(GPU_GBS, GPU_TFLOPS) * waste / occupancy + GPU_OVERHEAD_S * (1 + (split > 1))

    # -- running ---------------------------------------------------------------------------------------------
    def make_inputs(self, shape: Mapping[str, Any], device: str = "cpu") -> Any:
        raise NotImplementedError

    def run(self, inputs: Any, config: Config) -> Any:
        """Run the impl with `config` (threads already applied by `call`)."""
        raise NotImplementedError

    def reference(self, inputs: Any) -> Any:
        raise NotImplementedError

    def prepare(self, inputs: Any, config: Config) -> Callable[[], Any]:
        """A zero-argument callable that runs one configuration (what the timer times)."""
        return lambda: self.run(inputs, config)

    def source_hash(self) -> str:
        return source_hash_of(self.package)

    def tolerance(self, shape: Mapping[str, Any]) -> float:
        return self.rms_tol.get(str(shape.get("dtype", "fp32")), 1e-2)


def torch_dtype(name: str):
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise ValueError(f"dtype: {name!r} is not one of {', '.join(table)}")
    return table[name]
