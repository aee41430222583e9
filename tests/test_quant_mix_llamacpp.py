"""Every GGUF quant mix of `qlab.models.quant_mix` equals what llama.cpp's own quantizer writes, tensor by tensor.

A full-depth (all 64 layers) narrow Qwen3.6-27B is written as F16 by `qlab gguf synth --width-scale 32`, then
llama-cpp-python's `llama_model_quantize` decides each mix: as a dry run for every quant (llama.cpp's own type
choice per tensor, read from its log, in milliseconds), and for real for a few, whose written files must
agree with the dry run's types and with qlab's file size within 1 %. The width-scaled model keeps every row a
whole number of 256-weight super-blocks (as the full model's are), so llama.cpp's layer-dependent rules
(use_more_bits layers, first/last layers, attn_v/attn_qkv and ffn_down bumps, the output head, the qwen35
DeltaNet tensors) decide the types exactly as for the full model; a second file with 384-wide DeltaNet rows
checks the fallbacks llama.cpp takes for rows that are not whole super-blocks.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import replace

import pytest

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

from qlab.cli import main  # noqa: E402
from qlab.engine.gguf_io import default_synth_config, write_synthetic_gguf  # noqa: E402
from qlab.models.quant_mix import GGUF_QUANTS, quantize  # noqa: E402

WIDTH, VOCAB = 32, 512
_CALLBACKS: list = []
# llama_model_quantize_impl's per-tensor line: "[  6/ 851] blk.0.attn_qkv.weight - [ 256, 1280, 1, 1], type =
# f16, size = 0.62 MiB -> 0.21 MiB (q5_K)"; tensors it leaves alone have no "(type)" at the end
_LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^]]*\], type =\s*(\w+),.*?(?:\((\w+)\))?\s*$")


def _ftype(q: str) -> int:
    name = {"F32": "LLAMA_FTYPE_ALL_F32", "MXFP4": "LLAMA_FTYPE_MOSTLY_MXFP4_MOE"}.get(q, f"LLAMA_FTYPE_MOSTLY_{q}")
    return getattr(llama_cpp, name)


def _llama_quantize(src, dst, q: str, dry_run: bool) -> dict[str, str]:
    """Tensor name -> type llama.cpp gives it under `q` (from its log on a dry run, else from the file)."""
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        lines.append(text.decode("utf-8", "replace"))

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = _ftype(q)
    p.nthread = 2
    if dry_run and not any(f == "dry_run" for f, _ in type(p)._fields_):
        pytest.skip("this llama-cpp-python has no dry-run quantization")
    p.dry_run = dry_run
    _CALLBACKS.append(collect)   # llama.cpp keeps the pointer: the callback must outlive any later log line
    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p))
    finally:
        previous = getattr(getattr(llama_cpp, "_logger", None), "llama_log_callback", None)
        if previous is not None:   # llama-cpp-python's own logger, as at import
            llama_cpp.llama_log_set(previous, ctypes.c_void_p(0))
    assert rc == 0, f"llama_model_quantize({q}) returned {rc}"
    if not dry_run:
        return {t.name: t.tensor_type.name for t in gguf.GGUFReader(dst).tensors}
    got = {}
    for line in "".join(lines).splitlines():
        if m := _LINE.match(line.strip()):
            got[m[1]] = (m[3] or m[2]).upper()
    return got


def _compare(cfg, src, dst, q: str, dry_run: bool = True) -> dict[str, str]:
    got = _llama_quantize(src, dst, q, dry_run)
    mix = quantize(cfg.preset(), q)
    want = {t.name: t.type for t in mix.tensors}
    assert set(got) == set(want), f"{q}: tensor names differ: {sorted(set(got) ^ set(want))[:6]}"
    diff = [f"{n}: qlab {want[n]}, llama.cpp {got[n]}" for n in want if want[n] != got[n]]
    assert not diff, f"{q}: {len(diff)} tensors differ, e.g. " + "; ".join(diff[:6])
    if not dry_run:
        size = dst.stat().st_size
        assert mix.file_bytes == pytest.approx(size, rel=0.01), f"{q}: qlab {mix.file_bytes} B, llama.cpp {size} B"
        dst.unlink()
    return got


@pytest.fixture(scope="module")
def full_depth(tmp_path_factory):
    path = tmp_path_factory.mktemp("mix") / "src.gguf"
    assert main(["gguf", "synth", "--width-scale", str(WIDTH), "--vocab", str(VOCAB), "-o", str(path)]) == 0
    cfg = default_synth_config("qwen3.6-27b", None, WIDTH, VOCAB)
    assert cfg.n_layers == 64 and cfg.value_dim % 256 == 0 and cfg.hidden % 256 == 0
    return cfg, path


@pytest.mark.parametrize("quant", list(GGUF_QUANTS))
def test_mix_equals_llama_cpp_quantizer(full_depth, quant, tmp_path):
    cfg, src = full_depth
    got = _compare(cfg, src, tmp_path / f"{quant}.gguf", quant)
    assert len(got) == 851


@pytest.mark.parametrize("quant", [pytest.param("Q4_K_M", marks=pytest.mark.slow), "Q8_0"])
def test_written_file_has_the_dry_run_types_and_qlab_size(full_depth, quant, tmp_path):
    """The real quantization writes what the dry run reported (so reading the log is sound), at qlab's size."""
    cfg, src = full_depth
    _compare(cfg, src, tmp_path / f"{quant}.gguf", quant, dry_run=False)


def test_fallbacks_for_rows_that_are_not_whole_super_blocks(tmp_path):
    """One DeltaNet key head: value width 384, so ssm_out's rows fall back (Q4_K -> Q5_0, Q6_K -> Q8_0, ...)."""
    cfg = replace(default_synth_config("qwen3.6-27b", None, WIDTH, VOCAB), lin_k_heads=1, lin_v_heads=3)
    src = write_synthetic_gguf(tmp_path / "odd.gguf", cfg, "F16")
    for quant in ("Q4_K_M", "Q2_K", "Q6_K", "Q3_K_M", "IQ4_XS", "Q5_K_S"):
        types = {t.type for t in quantize(cfg.preset(), quant).tensors if t.name.endswith("ssm_out.weight")}
        assert types and types.isdisjoint({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"}), types  # not vacuous
        _compare(cfg, src, tmp_path / f"{quant}.gguf", quant)
