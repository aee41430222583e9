"""GGUF files of arch `qwen35`: read one (memory-mapped, matrices kept in their stored format) into `Weights`,
or write a synthetic one that llama.cpp loads.

Metadata keys and tensor names are those llama.cpp's qwen35 loader reads (`llama_model_qwen35::
load_arch_hparams` / `load_arch_tensors`, keys from `gguf-py/gguf/constants.py`). Every problem with a file
is a QlabError naming the file and, where one is at fault, the tensor.
"""

from __future__ import annotations

import glob
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from qlab.engine.config import QWEN36_27B, ModelConfig
from qlab.engine.tensors import TensorSpec, format_for, model_specs, mtp_specs
from qlab.errors import QlabError
from qlab.formats import get_format

ARCH = "qwen35"
MIN_VOCAB = 259 + 1      # <unk>, <s>, </s>, the 256 byte tokens, one piece
GGUF_ALIGNMENT = 32


# ---- reading --------------------------------------------------------------------------------------------------
def _open(path: str | os.PathLike):
    from qlab.engine.gguf_validate import GGUFError, open_reader

    p = Path(path)
    if not p.is_file():
        raise QlabError(f"{p}: no such GGUF file")
    try:
        return open_reader(p)
    except GGUFError:
        raise
    except Exception as e:  # truncated header, bad magic, a count past the end of the file...
        raise QlabError(f"{p}: not a readable GGUF file ({type(e).__name__}: {e})") from None


def config_from_gguf(reader, path, name: str = "gguf") -> ModelConfig:
    """The ModelConfig a qwen35 GGUF's metadata describes, every value checked against the tensors present first
    (`gguf_validate.validate`: one line per problem, naming the file and the key)."""
    from qlab.engine.gguf_validate import validate

    f = validate(reader, path)
    return ModelConfig(
        name=name, n_layers=f.n_layers, full_layers=f.n_layers, hidden=f.hidden, ffn=f.ffn, vocab=f.vocab,
        rms_eps=float(f"{f.rms_eps:.7g}"), full_attn_interval=f.full_attn_interval, n_heads=f.n_heads,
        n_kv_heads=f.n_kv_heads, head_dim=f.head_dim, rope_dim=f.rope_dim, rope_theta=f.rope_theta,
        lin_k_heads=f.lin_k_heads, lin_v_heads=f.lin_v_heads, lin_k_dim=f.lin_k_dim, lin_v_dim=f.lin_v_dim,
        conv_kernel=f.conv_kernel, max_context=f.max_context, mtp_layers=f.mtp_layers)


def read_gguf(path: str | os.PathLike, layers: int | None = None, *, check_memory: bool = True):
    """Weights from a qwen35 GGUF, memory-mapped: 2-D weights stay in their stored format (views of the map),
    1-D tensors and conv taps become small fp32 tensors. `layers` keeps only the first N layers. An MTP block
    (metadata nextn_predict_layers, tensors blk.{n_layers}.nextn.*) is read too when the file has one; it keeps
    its file name, so Qwen35 finds it after a slice's layers as well."""
    import torch

    from qlab.engine import memory, ops
    from qlab.engine.weights import Weights

    reader = _open(path)
    by_name = {t.name: t for t in reader.tensors}
    cfg = config_from_gguf(reader, path, name=Path(path).stem)
    file_layers = cfg.n_layers
    cfg = cfg.sliced(layers)
    specs = model_specs(cfg)
    if cfg.mtp_layers and f"blk.{file_layers}.nextn.eh_proj.weight" in by_name:
        specs = specs[:-2] + mtp_specs(cfg, block=file_layers) + specs[-2:]
    if check_memory:
        need = sum(int(by_name[s.name].n_bytes) for s in specs if s.name in by_name)
        memory.check_fits(f"{path} ({cfg.n_layers} layers)", need)
    tensors = {}
    for spec in specs:
        t = by_name.get(spec.name)
        if t is None:
            raise QlabError(f"{path}: tensor {spec.name!r} is missing (expected shape {list(spec.shape)})")
        shape = tuple(int(d) for d in reversed([int(x) for x in t.shape]))   # ggml ne -> [rows, cols]
        if math.prod(shape) != math.prod(spec.shape) or _squeeze(shape) != _squeeze(spec.shape):
            raise QlabError(f"{path}: tensor {spec.name!r} has shape {list(shape)}, expected {list(spec.shape)}")
        try:
            if spec.kind == "small":
                tensors[spec.name] = torch.from_numpy(_small_f32(t)).reshape(spec.shape)
            else:
                tensors[spec.name] = ops.from_gguf_tensor(t)
        except (ValueError, NotImplementedError) as e:   # unsupported type, bad block count (gguf-py: NotImpl.)
            raise QlabError(f"{path}: tensor {spec.name!r}: {e}") from None
    return Weights(cfg, tensors, str(path), keepalive=[reader])


def _squeeze(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _small_f32(t) -> np.ndarray:
    import gguf

    data = np.asarray(t.data)
    name = t.tensor_type.name
    if name == "F32":
        return np.array(data, dtype=np.float32).reshape(-1)
    if name in ("F16", "BF16") or name in gguf.GGMLQuantizationType.__members__:
        return np.asarray(gguf.quants.dequantize(data, t.tensor_type), dtype=np.float32).reshape(-1)
    raise ValueError(f"tensor {t.name!r}: type {name} not supported for a 1-D tensor")


# ---- writing ----------------------------------------------------------------------------------------------------
def _tokenizer(writer, vocab: int) -> None:
    """A synthetic SentencePiece-style vocabulary of exactly `vocab` tokens: <unk>, <s>, </s>, the 256 byte
    tokens llama.cpp's SPM loader looks up (e.g. <0x0A> for newline), then placeholder pieces."""
    import gguf

    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256
    tokens += [f"\u2581t{i}" for i in range(len(tokens), vocab)]
    types += [T.NORMAL] * (vocab - len(types))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(vocab)])
    writer.add_token_types([int(t) for t in types])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)


def _metadata(writer, cfg: ModelConfig, name: str, mtp: bool = False) -> None:
    writer.add_name(name)
    writer.add_block_count(cfg.n_layers + (1 if mtp else 0))   # llama.cpp counts the MTP block in block_count
    if mtp:
        writer.add_uint32(f"{ARCH}.nextn_predict_layers", 1)
    writer.add_context_length(cfg.max_context)
    writer.add_embedding_length(cfg.hidden)
    writer.add_feed_forward_length(cfg.ffn)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_layer_norm_rms_eps(cfg.rms_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_rope_dimension_count(cfg.rope_dim)
    writer.add_rope_dimension_sections(list(cfg.rope_sections))
    writer.add_ssm_conv_kernel(cfg.conv_kernel)
    writer.add_ssm_state_size(cfg.lin_k_dim)
    writer.add_ssm_group_count(cfg.lin_k_heads)
    writer.add_ssm_time_step_rank(cfg.lin_v_heads)
    writer.add_ssm_inner_size(cfg.value_dim)
    writer.add_full_attention_interval(cfg.full_attn_interval)


def _gguf_type(fmt: str):
    import gguf

    return gguf.GGMLQuantizationType[fmt]


def write_synthetic_gguf(path: str | os.PathLike, cfg: ModelConfig, dtype: str = "F16", seed: int = 0,
                         mtp: bool = False) -> Path:
    """Write the synthetic weights of `cfg` (the same values `synthetic_weights(cfg, dtype, seed, mtp=mtp)`
    draws) as a GGUF llama.cpp loads (without the MTP block: with it, the file is for qlab). Tensors are streamed
    one at a time, so memory stays at one tensor; the file appears atomically (written to a temp file beside it,
    then renamed)."""
    import gguf

    from qlab.validate import check_replaceable_file

    from qlab.engine.weights import check_drawable

    path = check_replaceable_file(path, "output file")  # never rename a temp file over /dev/null
    ftype = file_type(dtype)
    if cfg.vocab < MIN_VOCAB:
        raise QlabError(f"vocab {cfg.vocab}: a synthetic tokenizer needs at least {MIN_VOCAB} tokens")
    specs = model_specs(cfg, mtp)
    check_drawable(cfg, dtype, specs)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, ARCH)
        _metadata(w, cfg, f"{cfg.name} synthetic ({cfg.n_layers} layers, {dtype})", mtp)
        w.add_file_type(ftype)
        _tokenizer(w, cfg.vocab)
        for s in specs:
            if s.kind == "small":
                w.add_tensor_info(s.name, s.shape, np.dtype(np.float32), 4 * math.prod(s.shape))
            else:
                fmt = format_for(cfg, dtype, s.name)
                row = get_format(fmt).nbytes(s.shape[1])
                w.add_tensor_info(s.name, (s.shape[0], row), np.dtype(np.uint8), s.shape[0] * row,
                                  raw_dtype=_gguf_type(fmt))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        _stream_tensors(w, cfg, specs, dtype, seed)
        w.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _stream_tensors(w, cfg: ModelConfig, specs: list[TensorSpec], dtype: str, seed: int) -> None:
    """Write each tensor's data a block of rows at a time, with the alignment padding GGUFWriter.
    write_tensor_data puts around a tensor (so the offsets it wrote in the tensor infos hold), without ever
    holding a whole matrix in memory (the F16 head of the full model alone is 2.5 GB)."""
    from qlab.engine.weights import _draw_small, _generator, synthetic_row_blocks

    fout = w.fout[0]
    for s in specs:
        w.write_padding(fout, fout.tell())
        if s.kind == "small":
            data = _draw_small(s, _generator(s.name, seed)).float().numpy().astype(np.float32)
            data.tofile(fout)
            nbytes = data.nbytes
        else:
            nbytes = 0
            for _, _, q in synthetic_row_blocks(s, format_for(cfg, dtype, s.name), seed):
                np.ascontiguousarray(q.raw).tofile(fout)
                nbytes += q.raw.nbytes
        info = w.tensors[0].pop(s.name)
        if info.nbytes != nbytes:
            raise RuntimeError(f"{s.name}: wrote {nbytes} bytes, announced {info.nbytes}")
        w.write_padding(fout, nbytes)
    w.flush()
    os.fsync(fout.fileno())


def file_type(dtype: str) -> int:
    """GGUF `general.file_type` of a quant preset written by qlab; a QlabError for one a GGUF cannot hold."""
    import gguf

    from qlab.models.quant_mix import GGUF_QUANTS

    q = dtype.upper()
    name = {"F32": "ALL_F32", "MXFP4": "MOSTLY_MXFP4_MOE"}.get(q, f"MOSTLY_{q}")
    if q not in GGUF_QUANTS or name not in gguf.LlamaFileType.__members__:
        raise QlabError(f"--dtype {dtype}: GGUF files can hold {', '.join(GGUF_QUANTS)}")
    return int(gguf.LlamaFileType[name])


def gguf_nbytes(cfg: ModelConfig, dtype: str, mtp: bool = False) -> int:
    """Size of the synthetic GGUF of `cfg` before it is written: tensor data (each tensor padded to the
    alignment) plus the tokenizer and the tensor infos."""
    from qlab.engine.weights import synthetic_nbytes

    specs = model_specs(cfg, mtp)
    meta = 4096 + sum(96 + len(s.name) for s in specs) + cfg.vocab * (len("\u2581t248319".encode()) + 8 + 4 + 4)
    return synthetic_nbytes(cfg, dtype, mtp) + GGUF_ALIGNMENT * len(specs) + meta


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Remove the temp files a killed writer of `path` left (`.NAME.PID.*.tmp` whose process is gone); a temp
    file of a writer still running is kept."""
    removed = []
    prefix = f".{path.name}."
    for f in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = f.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    return True


def default_synth_config(model: str = "qwen3.6-27b", layers: int | None = None, width_scale: float = 1.0,
                         vocab: int | None = None) -> ModelConfig:
    from qlab.engine.config import get_config

    cfg = get_config(model) if model else QWEN36_27B
    if width_scale != 1.0 or vocab is not None:
        cfg = cfg.width_scaled(width_scale, vocab=vocab)
    return cfg.sliced(layers)
