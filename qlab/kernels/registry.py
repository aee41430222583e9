"""The one registry of kernel impls: what each impl is, where it runs, what it reads, what it tunes.

Each kernel family declares its impls in its own package (`<family>/impls.py`: `OPS`, a tuple of `OpSpec`, and
`IMPLS`, a tuple of `Impl` records; `<family>/checks.py`: `check(impl, device)`, which runs one impl against the
family's reference at small shapes); this module collects them. Callers (engine, tuner, profile, benchmarks) ask about *fields* — backend, devices,
formats, features — never about names:

    from qlab.kernels import registry
    registry.available("deltanet", "cpu")                      # [Impl, ...] that run here, preferred first
    impl, config, source = registry.resolve("dequant_matmul", {"M": 1, "N": 17408, "K": 5120, "fmt": "Q4_K"})
    registry.validate("attention_decode", "sdpa", "cpu")       # raises ValidationError on a wrong answer

`resolve` answers from the tune cache (device fingerprint, op, impl, kernel source hash, shape bucket) when
`qlab tune` has written an entry there, else with the impl's defaults; `source` says which ("cache" or
"default"). The contract, and how to add an impl, are in README.md beside this file.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

# the families whose impls.py this registry reads (a package listed here declares its own impls)
FAMILIES = ("qlab.kernels.dequant_matmul", "qlab.kernels.deltanet", "qlab.kernels.attention")
BACKENDS = ("torch", "c", "triton", "cupy")
DEVICE_KINDS = ("cpu", "cuda", "mps")
_FORMATS: dict = {}   # (family, "module:TABLE") -> the formats a kernel module's table lists (read once)


class ImplUnavailableError(RuntimeError):
    """The impl exists but cannot run on this device here (no GPU, no cupy, no triton, no C compiler)."""


class ValidationError(RuntimeError):
    """An impl gave a wrong answer against its op's reference (or crashed) on a device."""


@dataclass(frozen=True)
class OpSpec:
    """One op: its shape dims with Qwen3.6-27B defaults, which of them are bucketed to the next power of two
    (a tuned config serves every length up to it), and the package whose source hash keys the tune cache."""
    name: str
    dims: dict
    seq_dims: tuple[str, ...]
    package: str
    default_dtype: dict = field(default_factory=lambda: {"cpu": "fp32", "cuda": "bf16", "mps": "fp16"})

    def full_shape(self, shape: dict | None, device: str = "cpu") -> dict:
        out = dict(self.dims)
        out.setdefault("dtype", self.default_dtype.get(device_kind(device), "fp32"))
        out.update(shape or {})
        return out

    def bucket(self, shape: dict) -> dict:
        return {k: (_next_pow2(v) if k in self.seq_dims else v) for k, v in sorted(shape.items())}


@dataclass(frozen=True)
class Impl:
    """One impl of one op. `entry`, `prepare`, `formats` (when a string) and `tunables` name module attributes
    ("module:attr", module relative to the family package), imported on first use, so the registry loads
    without torch, triton or cupy."""
    op: str                            # "dequant_matmul", "deltanet", "attention_decode", "attention_prefill"
    name: str                          # backend and algorithm: "cpu_int8", "triton_recurrent", ...
    backend: str                       # one of BACKENDS: what must be present for it to run
    entry: str                         # "module:function" the family's dispatcher calls
    devices: tuple[str, ...]           # device kinds it runs on
    algorithm: str                     # one line for people: what it computes, and how
    formats: tuple[str, ...] | str | None = None   # weight formats it reads (None: all); "module:ATTR" is
    #                                    read from that constant (a dict's keys), so a format added there shows here
    dtypes: tuple[str, ...] = ("fp32", "bf16", "fp16")
    rank: int = 0                      # preference among the impls that run on a device: higher is tried first
    reference: bool = False            # the op's fp32 reference: what every other impl is checked against
    batches: bool = False              # takes several weights on one input in one call (`entry_many`)
    entry_many: str | None = None
    tunables: str | None = None        # module with SPACES / DEFAULTS / valid (the tuner's interface)
    prepare: str | None = None         # "module:function(weight, device)": load-time work (build, upload, repack)
    fits: Callable[[dict], bool] | None = None   # shapes resolve() may pick it for by default (None: all)
    features: frozenset = frozenset()  # op-specific capabilities, e.g. "fused_gate", "fused_layer_step"
    aliases: tuple[str, ...] = ()      # older names (tune-cache entries, baselines) that still select it
    delegates: str | None = None       # the impl that a direct call runs for formats/shapes outside its own
    #                                    (resolve never picks this impl for those: it picks that one, visibly)
    needs: Callable[[], str] | None = None   # extra availability check: "" when fine, else the reason

    @property
    def key(self) -> str:
        return f"{self.op}/{self.name}"

    def family(self) -> str:
        return _op_family()[self.op]

    def load(self, attr: str):
        """The object `attr` ("module:name") names, imported relative to the family package (looked up each
        time, so a test's monkeypatch of the module is seen; a sys.modules hit costs well under a microsecond)."""
        mod, name = attr.split(":")
        path = f"{self.family()}.{mod}"
        module = sys.modules.get(path) or importlib.import_module(path)
        return getattr(module, name)

    def fn(self) -> Callable:
        return self.load(self.entry)

    def supported_formats(self) -> tuple[str, ...] | None:
        if self.formats is None or isinstance(self.formats, tuple):
            return self.formats
        hit = _FORMATS.get((self.family(), self.formats))
        if hit is None:
            try:
                hit = tuple(self.load(self.formats))
            except ImportError:   # the module needs its backend (triton, cupy): no formats where it cannot load
                return ()
            _FORMATS[(self.family(), self.formats)] = hit
        return hit

    def reads(self, fmt: str) -> bool:
        f = self.supported_formats()
        return f is None or str(fmt).upper() in f

    def runs_on(self, device: str) -> bool:
        """Device kind is one of `devices`, or (Triton) CPU tensors under TRITON_INTERPRET=1."""
        kind = device_kind(device)
        return kind in self.devices or (self.backend == "triton" and kind == "cpu" and interpreting())

    def space(self) -> dict:
        return dict(self._tunables("SPACES").get(self.name, {}))

    def defaults(self) -> dict:
        return dict(self._tunables("DEFAULTS").get(self.name, {}))

    def _tunables(self, attr: str) -> dict:
        if not self.tunables:
            return {}
        return getattr(importlib.import_module(f"{self.family()}.{self.tunables}"), attr, {})


# ---- collecting the families' declarations -------------------------------------------------------------------
@lru_cache(maxsize=1)
def _load() -> tuple[dict, dict, dict, dict]:
    """(ops {name: OpSpec}, impls {(op, name): Impl}, aliases {(op, alias): name}, {op: family package}),
    from every family."""
    ops, impls, aliases, family = {}, {}, {}, {}
    for fam in FAMILIES:
        mod = importlib.import_module(f"{fam}.impls")
        for spec in mod.OPS:
            ops[spec.name] = spec
            family[spec.name] = fam
        for rec in mod.IMPLS:
            if rec.backend not in BACKENDS or not set(rec.devices) <= set(DEVICE_KINDS):
                raise ValueError(f"{fam}.impls: {rec.key} has backend {rec.backend!r} / devices {rec.devices}; "
                                 f"expected one of {BACKENDS} / a subset of {DEVICE_KINDS}")
            if (rec.op, rec.name) in impls:
                raise ValueError(f"{fam}.impls: {rec.key} is declared twice")
            impls[(rec.op, rec.name)] = rec
            for a in rec.aliases:
                aliases[(rec.op, a)] = rec.name
    return ops, impls, aliases, family


def _op_family() -> dict:
    return _load()[3]


def ops() -> tuple[str, ...]:
    return tuple(_load()[0])


def op_spec(op: str) -> OpSpec:
    specs = _load()[0]
    if op not in specs:
        from qlab.errors import unknown

        raise unknown("op", op, list(specs))
    return specs[op]


def impls(op: str) -> list[Impl]:
    """Every declared impl of `op`, preferred first (rank), wherever it runs."""
    op_spec(op)
    return sorted((r for (o, _), r in _load()[1].items() if o == op), key=lambda r: -r.rank)


def canonical(op: str, name: str) -> str:
    """`name`, or the impl an old alias (e.g. "torch_cpu") now names."""
    return _load()[2].get((op, name), name)


def get(op: str, name: str) -> Impl:
    """The record of `name` (or an alias of it); ValueError naming the impls of `op` otherwise."""
    rec = _load()[1].get((op, canonical(op, name)))
    if rec is None:
        from qlab.errors import closest

        names = [r.name for r in impls(op)]
        near = closest(name, names)
        raise ValueError(f"impl: unknown {name!r} for {op}; expected one of {', '.join(names)}"
                         + (f" (closest: {', '.join(near)})" if near else ""))
    return rec


# ---- where impls run ---------------------------------------------------------------------------------------------
def device_kind(device) -> str:
    return str(getattr(device, "type", device)).split(":")[0]


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken driver reads as "no GPU"
        return False


def _backend_reason(backend: str, kind: str) -> str:
    """Why `backend` cannot run on device kind `kind` here ("" when it can). Cached where the answer cannot
    change within a process (a compiler, a driver); TRITON_INTERPRET is read each time (tests set it)."""
    if backend == "torch":
        if kind == "cuda" and not _cuda():
            return "no CUDA device"
        if kind == "mps":
            import torch

            return "" if torch.backends.mps.is_available() else "no Apple GPU (MPS)"
        return ""
    if backend == "c":
        return _c_reason()
    if backend == "triton":
        why = _triton_import_reason()
        if why:
            return why
        if kind == "cuda":
            return "" if _cuda() else "no CUDA device"
        return "" if kind == "cpu" and interpreting() else "no CUDA device (and TRITON_INTERPRET is not set)"
    if backend == "cupy":
        return _cupy_reason()
    return f"unknown backend {backend!r}"


@lru_cache(maxsize=1)
def _c_reason() -> str:
    from qlab.kernels.cpu_build import BuildError, load

    try:
        load()
    except BuildError as e:
        return str(e)
    return ""


@lru_cache(maxsize=1)
def _triton_import_reason() -> str:
    try:
        import triton  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install raising at import
        return f"triton does not import ({type(e).__name__}: {e})"
    return ""


@lru_cache(maxsize=1)
def _cupy_reason() -> str:
    if not _cuda():
        return "no CUDA device (cupy needs an NVIDIA GPU)"
    try:
        import cupy
    except Exception as e:  # noqa: BLE001
        return f"cupy does not import ({type(e).__name__}: {e})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001
        return f"cupy sees no CUDA device ({type(e).__name__})"
    return "" if n > 0 else "cupy sees no CUDA device"


def why_unavailable(op: str, name: str, device: str = "cpu") -> str:
    """"" when impl `name` of `op` can run on `device` here, else the reason (one line)."""
    rec = get(op, name)
    kind = device_kind(device)
    if not rec.runs_on(device):
        return f"{rec.key} runs on {', '.join(rec.devices)}, not {kind}"
    why = _backend_reason(rec.backend, kind)
    if not why and rec.needs is not None:
        why = rec.needs()
    return why


def available(op: str, device: str = "cpu") -> list[Impl]:
    """The impls of `op` that can run on `device` here, preferred first."""
    return [r for r in impls(op) if not why_unavailable(op, r.name, device)]


def require(op: str, name: str, device: str = "cpu") -> Impl:
    """The record, or ImplUnavailableError saying why it cannot run here and what can."""
    rec = get(op, name)
    why = why_unavailable(op, rec.name, device)
    if why:
        raise ImplUnavailableError(f"impl {rec.name!r} is not available on this machine: {why}; "
                                   f"available: {', '.join(r.name for r in available(op, device))}")
    return rec


def reference(op: str) -> Impl:
    return next(r for r in impls(op) if r.reference)


# ---- choosing an impl and its config -----------------------------------------------------------------------------
def accepts(rec: Impl, shape: dict) -> bool:
    """Whether `rec` can take `shape` (its weight format, its dtype)."""
    if "fmt" in shape and not rec.reads(shape["fmt"]):
        return False
    return "dtype" not in shape or shape["dtype"] in rec.dtypes


def resolve(op: str, shape: dict | None = None, device: str = "cpu", *, impl: str | None = None,
            cache: bool = True) -> tuple[Impl, dict, str]:
    """(impl, config, source) for `op` at `shape` on `device`.

    impl: the one the tune cache chose for this (device, op, bucket) when `qlab tune --op decode` wrote a
    choice, else the highest-ranked impl that runs here and accepts the shape (a given `impl` is kept as long
    as it accepts the shape; whether it can run here is the caller's question, `require`). config: the tuned
    config of that impl at the shape's bucket, else its defaults. source: "cache" when the config came from the
    tune cache, else "default"."""
    spec = op_spec(op)
    full = spec.full_shape(shape, device)
    kind = device_kind(device)
    if impl is not None:
        rec = get(op, impl)
        if not accepts(rec, full):
            raise ValueError(f"impl {rec.name!r} of {op} does not accept {_describe(full)} "
                             f"(formats: {', '.join(rec.supported_formats() or ('all',))})")
    else:
        here = [r for r in available(op, device)
                if kind in r.devices and accepts(r, full) and (r.fits is None or r.fits(full))]
        if not here:
            raise ImplUnavailableError(f"no impl of {op} runs on {kind} here for {_describe(full)}")
        rec = here[0]
        if cache:
            chosen = _tuned_choice(spec, full, device)
            rec = next((r for r in here if r.name == chosen), rec)
    config = rec.defaults()
    source = "default"
    if cache and rec.tunables:
        tuned = _tuned_config(spec, rec, full, device)
        if tuned is not None:
            config, source = tuned, "cache"
    return rec, config, source


def _describe(shape: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in shape.items())


def cache_fields(spec: OpSpec, impl: str, full_shape: dict, device: str) -> dict:
    """The tune cache's key fields for one (op, impl, shape) — the same the tuner writes."""
    from qlab.tune.cache import environment, source_hash_of

    return {**environment(device_kind(device)), "op": spec.name, "impl": impl,
            "source": source_hash_of(spec.package), "bucket": spec.bucket(full_shape)}


def choice_fields(spec: OpSpec, full_shape: dict, device: str) -> dict:
    """The tune cache's key fields for the impl chosen for (op, bucket) by the decode tuner."""
    from qlab.tune.cache import environment

    return {**environment(device_kind(device)), "op": spec.name, "choice": "impl",
            "bucket": spec.bucket(full_shape)}


def _tuned_config(spec: OpSpec, rec: Impl, full: dict, device: str) -> dict | None:
    from qlab.tune.cache import default_cache, make_key

    hit = default_cache().get(make_key(cache_fields(spec, rec.name, full, device)))
    cfg = hit.get("config") if isinstance(hit, dict) else None
    if not isinstance(cfg, dict):
        return None
    space = rec.space()
    # per-op thread counts are the standalone tuner's; the decode loop runs one thread count (tuned by
    # `qlab tune --op decode`), so only the kernel's own parameters are taken, and only values of its space
    out = {k: v for k, v in cfg.items() if k in space and v in space[k]}
    return {**rec.defaults(), **out} if out else None


def _tuned_choice(spec: OpSpec, full: dict, device: str) -> str | None:
    from qlab.tune.cache import default_cache, make_key

    hit = default_cache().get(make_key(choice_fields(spec, full, device)))
    name = hit.get("impl") if isinstance(hit, dict) else None
    return canonical(spec.name, name) if isinstance(name, str) else None


# ---- checking an impl against its reference --------------------------------------------------------------------
def validate(op: str, name: str, device: str = "cpu") -> list[dict]:
    """Run impl `name` of `op` against the op's reference at small shapes on `device` (seed 42, NaN-free random
    inputs). Returns one row per case ({"case", "rel_rms", "tol"}); raises ImplUnavailableError when the impl
    cannot run here and ValidationError (one line: op, impl, device, case, error) when an answer is wrong or
    the impl crashes. Profile and selftest call it before timing an impl."""
    rec = require(op, name, device)
    check = importlib.import_module(f"{rec.family()}.checks").check
    try:
        rows = check(rec, device)
    except ValidationError:
        raise
    except Exception as e:  # noqa: BLE001 - a crash is a failed validation, reported as one line
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValidationError(f"{rec.key} on {device}: {type(e).__name__}: {msg}") from e
    bad = [r for r in rows if not r["rel_rms"] <= r["tol"]]   # NaN fails too
    if bad:
        r = bad[0]
        raise ValidationError(f"{rec.key} on {device}: {r['case']}: rel RMS error {r['rel_rms']:.3g} against "
                              f"{reference(op).name} > {r['tol']:.0e}")
    return rows


def _next_pow2(n) -> Any:
    return 1 << max(0, int(n) - 1).bit_length() if isinstance(n, int) else n
