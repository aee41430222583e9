"""The Gated DeltaNet Triton kernels compile ahead of time (no GPU) with no register spills at the configs
the tuner may pick: the defaults on sm_80 (the tightest register file for these kernels) in the quick suite,
every spec on every architecture in the slow one."""

from __future__ import annotations

import itertools
import os

import pytest

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("AOT compilation needs Triton's JIT, not the interpreter", allow_module_level=True)

from qlab.kernels.aot import ARCHS, compile_spec  # noqa: E402
from qlab.kernels.deltanet.aot_specs import aot_specs  # noqa: E402
from qlab.kernels.deltanet.tunables import DEFAULTS, SPACES, valid  # noqa: E402


def _default_specs() -> list[dict]:
    rec, ch = DEFAULTS["triton_recurrent"], DEFAULTS["triton_chunk"]
    names = {f"gdn_recurrent_fwd BV={rec['BV']}": rec, f"gdn_chunk_prep BT={ch['chunk_size']}": ch,
             f"gdn_chunk_fwd BT={ch['chunk_size']} BV={ch['BV']}": ch}
    return [s for s in aot_specs() if s["name"] in names and s["num_warps"] == names[s["name"]]["num_warps"]
            and s["num_stages"] == names[s["name"]].get("num_stages", 1)]


def test_specs_cover_every_valid_config():
    specs = aot_specs()
    n_valid = {impl: sum(valid(impl, dict(zip(SPACES[impl], v))) for v in itertools.product(*SPACES[impl].values()))
               for impl in ("triton_recurrent", "triton_chunk")}
    assert sum(s["name"].startswith("gdn_recurrent_fwd") for s in specs) == n_valid["triton_recurrent"]
    assert sum(s["name"].startswith("gdn_chunk_fwd") for s in specs) == n_valid["triton_chunk"]
    for s in specs:
        assert set(s) == {"name", "fn", "signature", "constexprs", "num_warps", "num_stages"}
        assert all(s["signature"][c] == "constexpr" for c in s["constexprs"])
    assert len(_default_specs()) == 3


@pytest.mark.parametrize("spec", _default_specs(), ids=lambda s: s["name"])
def test_default_configs_compile_without_spills(spec):
    r = compile_spec(spec, 80, "deltanet")
    assert r.error == "", r.error
    assert 0 < r.regs <= 255 and r.spills == 0, r


@pytest.mark.slow
@pytest.mark.parametrize("cc", ARCHS)
def test_every_spec_compiles_without_spills(cc):
    bad = [r for r in (compile_spec(s, cc, "deltanet") for s in aot_specs()) if r.error or r.spills]
    assert not bad, [(r.name, r.num_warps, r.num_stages, r.spills, r.error) for r in bad]


def _variant(name: str, signature: dict, constexprs: dict) -> dict:
    spec = next(s for s in aot_specs() if s["name"].split()[0] == name)
    return {**spec, "signature": {**spec["signature"], **signature}, "constexprs": {**spec["constexprs"], **constexprs}}


@pytest.mark.parametrize("spec", [
    _variant("gdn_recurrent_fwd", {n: "*fp32" for n in ("q", "k", "v", "g", "beta", "o")},
             dict(USE_INITIAL_STATE=False, STORE_FINAL_STATE=False, USE_QK_L2NORM=False, USE_GATE=False,
                  HAS_DT_BIAS=False, K=72)),
    _variant("gdn_chunk_prep", {"k": "*fp32", "v": "*fp32"}, dict(IEEE=True)),
    _variant("gdn_chunk_fwd", {"q": "*fp32", "k": "*fp32", "o": "*fp32"},
             dict(IEEE=True, USE_INITIAL_STATE=False, STORE_FINAL_STATE=False, K=64, BK=64)),
], ids=["recurrent-fp32-nogate-K72", "prep-fp32", "fwd-fp32-onehalf"])
def test_other_branches_compile(spec):
    """The launchers' other constexpr branches (fp32 io, no gate, no state, one K half) compile too."""
    r = compile_spec(spec, 80, "deltanet")
    assert r.error == "" and r.regs > 0, r
