"""Up-front checks of a qwen35 GGUF, before anything is built from it: an untrusted file is either described
by a `GGUFFacts` whose every number agrees with the tensors the file holds, or rejected with a QlabError that
lists each problem on its own line, naming the file and the metadata key or tensor at fault.

Why up front: the reader builds lists per layer, per head and per token from these numbers, so a `block_count`
of 0xFFFFFFFF or a `head_count_kv` of 0 must be caught before any of that runs. Every count is first bounded
by what the file can hold (tensors found, bytes present); only then are shapes derived from it.
Checks: metadata types and ranges (layer count = blocks found, head counts divide, rope dims even and within
the head, DeltaNet group/value-head counts consistent with the tensors), tensor extents inside the file and
not overlapping, strings valid UTF-8. Torch-free.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from qlab.errors import QlabError

ARCH = "qwen35"
MAX_WIDTH = 1 << 20          # no real model has a hidden, FFN or head width anywhere near this
_BLOCK = re.compile(r"^blk\.(\d+)\.")


class GGUFError(QlabError):
    """A GGUF file that cannot describe a model qlab runs; one line per problem."""


@dataclass(frozen=True)
class GGUFFacts:
    """The checked numbers of a qwen35 GGUF (what `config_from_gguf` turns into a ModelConfig)."""
    n_layers: int               # main layers (block_count minus the MTP blocks)
    mtp_layers: int
    hidden: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_dim: int
    rope_theta: float
    rms_eps: float
    lin_k_heads: int
    lin_v_heads: int
    lin_k_dim: int
    lin_v_dim: int
    conv_kernel: int
    full_attn_interval: int
    max_context: int
    vocab: int


_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}   # GGUF value type -> bytes
_STRING, _ARRAY = 8, 9


def prescan(path) -> None:
    """Walk the GGUF header once, checking every count against the bytes left in the file before anything
    loops over it: gguf-py's reader visits array items one by one, so an array whose count was flipped to
    2**62 would keep it busy for minutes (and a real file's for hours)."""
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        size = len(m)
        if size < 24 or m[:4] != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (no GGUF magic)")
        end = "<" if struct.unpack_from("<I", m, 4)[0] < 0x10000 else ">"
        version, n_tensors, n_kv = struct.unpack_from(end + "IQQ", m, 4)
        if version not in (2, 3):
            raise GGUFError(f"{path}: GGUF version {version}, expected 2 or 3")
        pos = 24

        def take(n: int, what: str) -> int:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise GGUFError(f"{path}: {what}: needs {n} bytes at offset {pos}, past the end of the file "
                                f"({size} bytes)")
            pos += n
            return pos - n

        def u64(what: str) -> int:
            return struct.unpack_from(end + "Q", m, take(8, what))[0]

        def string(what: str) -> None:
            take(u64(what), what)

        if n_kv > (size - pos) // 13:   # the smallest entry: an empty key, its type, one byte of value
            raise GGUFError(f"{path}: header: {n_kv} metadata entries cannot fit in {size} bytes")
        for i in range(n_kv):
            at = pos
            key_len = u64(f"metadata entry {i}")
            key = bytes(m[take(key_len, f"metadata entry {i} key"):pos]).decode("utf-8", "replace")
            key = key if key.isprintable() else repr(key)    # a damaged key stays on one line
            vtype = struct.unpack_from(end + "I", m, take(4, key))[0]
            if vtype == _ARRAY:
                itype = struct.unpack_from(end + "I", m, take(4, key))[0]
                count = u64(key)
                if itype == _STRING:
                    if count > (size - pos) // 8:
                        raise GGUFError(f"{path}: {key}: {count} strings cannot fit in the {size - pos} bytes left")
                    for j in range(count):
                        string(f"{key}[{j}]")
                elif itype in _SCALAR_BYTES:
                    take(count * _SCALAR_BYTES[itype], f"{key} ({count} items)")
                else:
                    raise GGUFError(f"{path}: {key}: unknown array item type {itype} (entry at offset {at})")
            elif vtype == _STRING:
                string(key)
            elif vtype in _SCALAR_BYTES:
                take(_SCALAR_BYTES[vtype], key)
            else:
                raise GGUFError(f"{path}: {key}: unknown value type {vtype} (entry at offset {at})")
        if n_tensors > (size - pos) // 24:   # name length, dim count, one dim, type, offset
            raise GGUFError(f"{path}: header: {n_tensors} tensor infos cannot fit in the {size - pos} bytes left")
        for i in range(n_tensors):
            string(f"tensor info {i} name")
            n_dims = struct.unpack_from(end + "I", m, take(4, f"tensor info {i}"))[0]
            if not 1 <= n_dims <= 4:
                raise GGUFError(f"{path}: tensor info {i}: {n_dims} dimensions, expected 1..4")
            take(8 * n_dims + 4 + 8, f"tensor info {i}")


def open_reader(path):
    """`gguf.GGUFReader` over `path`, after `prescan`; each tensor info checked (name, type, extent inside the
    file) before the reader maps its data, so a bad one is named instead of surfacing as a numpy reshape error."""
    import gguf
    import numpy as np

    prescan(path)
    size = os.path.getsize(path)

    class Reader(gguf.GGUFReader):
        def _build_tensors(self, start_offs, fields):
            for field in fields:
                _, name_data, _, dims, raw_type, offset = field.parts
                try:
                    name = bytes(name_data).decode("utf-8")
                except UnicodeDecodeError as e:
                    raise GGUFError(f"{path}: a tensor name is not valid UTF-8 ({e.reason})") from None
                where = f"{path}: tensor {name!r}"
                try:
                    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(raw_type[0]))]
                except (ValueError, KeyError):
                    raise GGUFError(f"{where}: unknown type {int(raw_type[0])}") from None
                n = math.prod(int(d) for d in dims)       # Python ints: no silent uint64 wrap-around
                start, n_bytes = int(start_offs) + int(offset[0]), n * type_size // block
                if n % block:
                    raise GGUFError(f"{where}: {n} weights are not a whole number of {block}-weight blocks")
                if start + n_bytes > size:
                    raise GGUFError(f"{where}: data [{start}, {start + n_bytes}) lies outside the file "
                                    f"({size} bytes)")
            with np.errstate(over="ignore"):
                super()._build_tensors(start_offs, fields)

    return Reader(path, "r")


def _ne(t) -> list[int]:
    return [int(x) for x in t.shape]


class _Check:
    """Collects problems; `need_*` return a checked value or None (and record why)."""

    def __init__(self, reader, path):
        self.reader, self.path, self.problems = reader, path, []

    def fail(self, where: str, msg: str) -> None:
        self.problems.append(f"{self.path}: {where}: {msg}")

    def value(self, key: str, kind: str):
        """A scalar metadata value of `kind` ('int', 'float', 'str'), or None when missing or mistyped."""
        import gguf

        f = self.reader.fields.get(key)
        if f is None:
            return None
        T = gguf.GGUFValueType
        ints = {T.UINT8, T.INT8, T.UINT16, T.INT16, T.UINT32, T.INT32, T.UINT64, T.INT64}
        want = {"int": ints, "float": {T.FLOAT32, T.FLOAT64}, "str": {T.STRING}}[kind]
        if kind == "float":
            want = want | ints
        if len(f.types) != 1 or f.types[0] not in want:
            self.fail(key, f"expected a single {kind} value, found {'/'.join(t.name for t in f.types) or 'nothing'}")
            return None
        if kind == "str":
            try:
                return bytes(f.parts[-1]).decode("utf-8")
            except UnicodeDecodeError as e:
                self.fail(key, f"string is not valid UTF-8 ({e.reason} at byte {e.start})")
                return None
        v = f.parts[-1].tolist()[0]
        if kind == "float" and not math.isfinite(v):
            self.fail(key, f"{v} is not a finite number")
            return None
        return int(v) if kind == "int" else float(v)

    def need(self, key: str, kind: str = "int", lo: float | None = 1, hi: float | None = MAX_WIDTH):
        v = self.value(f"{ARCH}.{key}", kind)
        if v is None:
            if f"{ARCH}.{key}" not in self.reader.fields:
                self.fail(f"{ARCH}.{key}", "metadata key is missing")
            return None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(f"{ARCH}.{key}", f"{v} is out of range (expected {lo}..{hi})")
            return None
        return v


def _check_extents(c: _Check, tensors, file_size: int) -> None:
    """Every tensor's data lies inside the file, and no two overlap."""
    spans = []
    for t in tensors:
        start, n = int(t.data_offset), int(t.n_bytes)
        if start < 0 or n < 0 or start + n > file_size:
            c.fail(f"tensor {t.name!r}", f"data [{start}, {start + n}) lies outside the file ({file_size} bytes)")
        elif n:
            spans.append((start, start + n, t.name))
    spans.sort()
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            c.fail(f"tensor {n1!r}", f"data [{s1}, {e1}) overlaps tensor {n0!r} [{s0}, {e0})")


def _check_tokens(c: _Check) -> int | None:
    """Number of tokenizer tokens, each decoded as UTF-8 (None when the file has no token list)."""
    f = c.reader.fields.get("tokenizer.ggml.tokens")
    if f is None:
        return None
    for n, idx in enumerate(f.data):
        try:
            bytes(f.parts[idx]).decode("utf-8")
        except UnicodeDecodeError as e:
            c.fail("tokenizer.ggml.tokens", f"token {n} is not valid UTF-8 ({e.reason} at byte {e.start})")
            return None
    return len(f.data)


def validate(reader, path: str | os.PathLike) -> GGUFFacts:
    """Check a qwen35 GGUF opened by `gguf.GGUFReader`; a GGUFError (one line per problem) unless all is well."""
    c = _Check(reader, path)
    arch = c.value("general.architecture", "str")
    if arch is not None and arch != ARCH:
        raise GGUFError(f"{path}: architecture {arch!r}, expected {ARCH!r} (Qwen3.5/3.6 dense)")
    if arch is None and "general.architecture" not in reader.fields:
        c.fail("general.architecture", "metadata key is missing")
    tensors = list(reader.tensors)
    _check_extents(c, tensors, os.path.getsize(path))
    by_name = {t.name: t for t in tensors}
    blocks = sorted({int(m[1]) for t in tensors if (m := _BLOCK.match(t.name))})   # at most one per tensor
    gaps = [b for a, b in zip([-1] + blocks, blocks) if b != a + 1]
    if gaps:
        c.fail("tensors", f"the blocks are not numbered 0..{len(blocks) - 1} (a gap before blk.{gaps[0]})")
    found = len(blocks)

    block_count = c.need("block_count", lo=1, hi=None)
    if block_count is not None and block_count != found:
        c.fail(f"{ARCH}.block_count", f"{block_count}, but the file holds tensors of {found} blocks")
        block_count = None
    nextn = c.value(f"{ARCH}.nextn_predict_layers", "int") or 0
    if block_count is not None and not 0 <= nextn < block_count:
        c.fail(f"{ARCH}.nextn_predict_layers", f"{nextn} is out of range (expected 0..{block_count - 1})")
        nextn = 0
    hidden = c.need("embedding_length")
    ffn = c.need("feed_forward_length")
    heads = c.need("attention.head_count")
    kv = c.need("attention.head_count_kv")
    head_dim = c.need("attention.key_length")
    rope_dim = c.need("rope.dimension_count")
    groups = c.need("ssm.group_count")
    v_heads = c.need("ssm.time_step_rank")
    k_dim = c.need("ssm.state_size")
    inner = c.need("ssm.inner_size")
    conv = c.need("ssm.conv_kernel", hi=64)
    context = c.need("context_length", hi=1 << 40)
    theta = c.need("rope.freq_base", "float", lo=None, hi=None)
    eps = c.need("attention.layer_norm_rms_epsilon", "float", lo=None, hi=None)
    interval = c.value(f"{ARCH}.full_attention_interval", "int")
    interval = 4 if interval is None else interval

    if theta is not None and theta <= 0:
        c.fail(f"{ARCH}.rope.freq_base", f"{theta} must be > 0")
    if eps is not None and not 0 < eps < 1:
        c.fail(f"{ARCH}.attention.layer_norm_rms_epsilon", f"{eps} must lie in (0, 1)")
    if heads and kv and heads % kv:
        c.fail(f"{ARCH}.attention.head_count_kv", f"{kv} does not divide head_count {heads}")
    if rope_dim and head_dim and (rope_dim % 2 or rope_dim > head_dim):
        c.fail(f"{ARCH}.rope.dimension_count", f"{rope_dim}: expected an even number <= key_length {head_dim}")
    if groups and v_heads and v_heads % groups:
        c.fail(f"{ARCH}.ssm.group_count", f"{groups} does not divide ssm.time_step_rank {v_heads}")
    if inner and v_heads and inner % v_heads:
        c.fail(f"{ARCH}.ssm.inner_size", f"{inner} is not a multiple of ssm.time_step_rank {v_heads}")
    n_layers = None if block_count is None else block_count - nextn
    if n_layers is not None and not 1 <= interval <= max(n_layers, 1):
        c.fail(f"{ARCH}.full_attention_interval", f"{interval} is out of range (expected 1..{n_layers})")
        interval = None

    def shape(name: str, want: list[int | None], key: str) -> None:
        """Tensor `name` has ggml shape `want` (None: any); a mismatch blames metadata `key`."""
        t = by_name.get(name)
        if t is None or any(w is None for w in want):
            return
        if _ne(t)[:len(want)] != want or any(d != 1 for d in _ne(t)[len(want):]):
            c.fail(f"{ARCH}.{key}", f"disagrees with tensor {name!r} of shape {_ne(t)} (expected {want})")

    embd = by_name.get("token_embd.weight")
    if embd is None:
        c.fail("tensor 'token_embd.weight'", "missing")
    vocab = _ne(embd)[1] if embd is not None and len(_ne(embd)) >= 2 else 0
    shape("token_embd.weight", [hidden, vocab], "embedding_length")
    shape("blk.0.ffn_up.weight", [hidden, ffn], "feed_forward_length")
    if interval and n_layers:
        a, d = interval - 1, (0 if interval > 1 else None)
        if a < n_layers:
            q = heads * head_dim * 2 if heads and head_dim else None
            shape(f"blk.{a}.attn_q.weight", [hidden, q], "attention.head_count")
            shape(f"blk.{a}.attn_k.weight", [hidden, kv * head_dim if kv and head_dim else None],
                  "attention.head_count_kv")
        if d is not None:
            conv_dim = 2 * groups * k_dim + inner if groups and k_dim and inner else None
            shape(f"blk.{d}.attn_qkv.weight", [hidden, conv_dim], "ssm.group_count")
            shape(f"blk.{d}.ssm_a", [v_heads], "ssm.time_step_rank")
            shape(f"blk.{d}.ssm_conv1d.weight", [conv, conv_dim], "ssm.conv_kernel")
            shape(f"blk.{d}.ssm_out.weight", [inner, hidden], "ssm.inner_size")
    n_tokens = _check_tokens(c)
    if n_tokens is not None and vocab and n_tokens != vocab:
        c.fail("tokenizer.ggml.tokens", f"{n_tokens} tokens, but tensor 'token_embd.weight' has {vocab} rows")
    rec = reader.fields.get(f"{ARCH}.attention.recurrent_layers")
    if rec is not None and n_layers and interval and len(rec.data) >= n_layers:
        flags = [bool(rec.parts[i].tolist()[0]) for i in rec.data[:n_layers]]
        if flags != [(i + 1) % interval != 0 for i in range(n_layers)]:
            c.fail(f"{ARCH}.attention.recurrent_layers", f"is not the every-{interval}th-layer attention pattern "
                   f"this engine runs")
    if c.problems:
        raise GGUFError("\n".join(c.problems))
    return GGUFFacts(n_layers=n_layers, mtp_layers=nextn, hidden=hidden, ffn=ffn, n_heads=heads, n_kv_heads=kv,
                     head_dim=head_dim, rope_dim=rope_dim, rope_theta=theta, rms_eps=eps, lin_k_heads=groups,
                     lin_v_heads=v_heads, lin_k_dim=k_dim, lin_v_dim=inner // v_heads, conv_kernel=conv,
                     full_attn_interval=interval, max_context=context, vocab=vocab)
