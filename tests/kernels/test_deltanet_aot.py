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
