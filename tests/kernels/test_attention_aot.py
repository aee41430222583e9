"""The attention Triton kernels compile ahead of time for real GPUs (no GPU needed) without register spills
at the tuner's default configurations; the full tuner space is declared in aot_specs() (see README.md)."""

import pytest

pytest.importorskip("triton")

from qlab.kernels.attention.aot_specs import aot_specs, default_specs  # noqa: E402


def test_specs_are_well_formed():
    specs = aot_specs()
    assert len({s["name"] for s in specs}) == len(specs)
    for s in specs:
        assert list(s["signature"]) == list(s["fn"].arg_names), s["name"]
        assert all(s["signature"][k] == "constexpr" for k in s["constexprs"]), s["name"]
        assert s["num_warps"] in (1, 2, 4, 8) and s["num_stages"] >= 1


def _compile(spec, cc):
    from qlab.kernels.aot import compile_spec

    r = compile_spec(spec, cc, op="attention")
    assert not r.error, f"{spec['name']} sm_{cc}: {r.error}"
    assert r.spills == 0, f"{spec['name']} sm_{cc}: {r.spill_stores} B spill stores, {r.spill_loads} B loads"
    assert r.shared_bytes <= 99 * 1024, f"{spec['name']} sm_{cc}: {r.shared_bytes} B shared"
    return r


@pytest.mark.parametrize("cc", [80, 120])     # the most register-hungry and the smallest shared memory
@pytest.mark.parametrize("spec", default_specs(), ids=lambda s: s["name"])
def test_default_configs_compile_without_spills(spec, cc):
    _compile(spec, cc)


@pytest.mark.slow
@pytest.mark.parametrize("cc", [86, 89, 90])
@pytest.mark.parametrize("spec", default_specs(), ids=lambda s: s["name"])
def test_default_configs_compile_without_spills_other_archs(spec, cc):
    _compile(spec, cc)
