"""Bad GGUF files for the validation and fuzz tests: small valid qwen35 files, in-place patches of one metadata
value or tensor-info field, seeded mutations, and a worker process that reads a file the way `qlab gguf info`
and `qlab bench decode --gguf` do (so a hang or a crash of one case is seen, not suffered, by the test).

Run as a script it is that worker: it reads one path per line on stdin and answers one line per case,
`ok`, `clear <message>` (a QlabError) or `other <exception type>: <message>`.
"""

from __future__ import annotations

import json
import random
import select
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

TINY_DTYPES = ("F16", "F32", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "Q5_K_M", "Q3_K_M", "Q2_K", "IQ4_XS", "BF16")


def tiny_config():
    """A 4-layer qwen35 with 256-wide rows (every K-quant applies) and the smallest synthetic vocabulary."""
    from qlab.engine.config import QWEN36_27B

    return replace(QWEN36_27B, name="tiny", n_layers=4, full_layers=4, hidden=256, ffn=256, vocab=260, n_heads=2,
                   n_kv_heads=1, lin_k_heads=1, lin_v_heads=2, max_context=4096)


def write_tiny(path: Path, dtype: str) -> Path:
    from qlab.engine.gguf_io import write_synthetic_gguf

    return write_synthetic_gguf(path, tiny_config(), dtype, seed=7)


def _offset(reader, part: np.ndarray) -> int:
    return part.__array_interface__["data"][0] - reader.data.__array_interface__["data"][0]


def field_slots(path: Path) -> list[tuple[str, int, np.dtype]]:
    """(what, byte offset, dtype) of every scalar slot of the header a mutation may target: metadata values,
    string and array lengths, tensor-info dims, types and offsets."""
    import gguf

    r = gguf.GGUFReader(path)
    slots = []
    for f in r.fields.values():
        # the key length, value type and (arrays) item type and count first: a mutation picks among these
        # structural slots half of the time, so the few counts are hit as often as the many values
        n_struct = 5 if len(f.types) > 1 else 3
        for i, part in enumerate(f.parts):
            if part.size == 1 and part.dtype.kind in "uif":
                slots.append((f"{f.name}[{i}]" + ("*" if i < n_struct and i != 1 else ""), _offset(r, part),
                              part.dtype))
    for t in r.tensors:
        for i, part in enumerate(t.field.parts):
            if part.size >= 1 and part.dtype.kind in "ui":
                for j in range(min(part.size, 4)):
                    slots.append((f"tensor {t.name}[{i}.{j}]", _offset(r, part) + j * part.dtype.itemsize, part.dtype))
    return slots


def patch_value(src: Path, dst: Path, key: str, value, part: int = -1) -> Path:
    """A copy of `src` with metadata `key`'s value (the field's part `part`) set to `value`, in place."""
    import gguf

    r = gguf.GGUFReader(src)
    p = r.fields[key].parts[part]
    return _patch(src, dst, _offset(r, p), np.asarray(value).astype(p.dtype).tobytes())


def patch_tensor(src: Path, dst: Path, name: str, what: str, value) -> Path:
    """A copy with tensor `name`'s info field `what` ('type' or 'offset') set to `value`."""
    import gguf

    r = gguf.GGUFReader(src)
    t = next(t for t in r.tensors if t.name == name)
    part = t.field.parts[{"type": -2, "offset": -1}[what]]
    return _patch(src, dst, _offset(r, part), np.asarray(value).astype(part.dtype).tobytes())


def tensor_offset(src: Path, name: str) -> int:
    """The offset (relative to the data section) tensor `name` records in its info."""
    import gguf

    r = gguf.GGUFReader(src)
    return int(next(t for t in r.tensors if t.name == name).field.parts[-1][0])


def _patch(src: Path, dst: Path, at: int, data: bytes) -> Path:
    b = bytearray(src.read_bytes())
    b[at:at + len(data)] = data
    dst.write_bytes(bytes(b))
    return dst


TIMEOUT_S = 20.0
INTERESTING = (0, 1, 2, 3, 7, 63, 255, 257, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1, -1)


def mutate(base: bytes, slots, header_end: int, rng: random.Random) -> bytes:
    """One seeded mutation of a valid file: an interesting value in a header slot, a few flipped bits or random
    bytes in the header, or a truncation."""
    b = bytearray(base)
    kind = rng.random()
    if kind < 0.55:
        structural = [s for s in slots if s[0].endswith("*") or s[0].startswith("tensor ")]
        what, at, dt = rng.choice(structural if rng.random() < 0.5 else slots)
        v = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randrange(0, 1 << (8 * dt.itemsize))
        if dt.kind == "f":
            v = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30, float(v)])
        with np.errstate(over="ignore", invalid="ignore"):
            raw = np.array(v % (1 << (8 * dt.itemsize)) if dt.kind in "ui" else v).astype(dt).tobytes()
        b[at:at + len(raw)] = raw
    elif kind < 0.85:
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(header_end)
            b[at] ^= 1 << rng.randrange(8)
    elif kind < 0.95:
        at = rng.randrange(header_end)
        n = rng.randint(1, 8)
        b[at:at + n] = bytes(rng.randrange(256) for _ in range(n))
    else:
        del b[rng.randrange(len(b)):]
    return bytes(b)


def header_end(path: Path) -> int:
    """Byte offset where tensor data starts (everything before is metadata and tensor infos)."""
    import gguf

    return int(gguf.GGUFReader(path).data_offset)


class Worker:
    """`python gguf_cases.py`: one case per line; restarted after a hang or a crash."""

    def __init__(self):
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def run(self, path: Path, base: Path | None = None, timeout: float = TIMEOUT_S) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(f"{path}\t{base}\n" if base else f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return "hang"
        line = self.proc.stdout.readline()
        if not line:   # the worker died: a signal (segfault, abort) or an exit
            rc = self.proc.wait()
            self.proc = None
            return f"signal {rc}"
        return json.loads(line)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


_BASE_CONFIGS: dict = {}


def run_case(path: str, base: str | None = None) -> str:
    """What `gguf info` and `bench decode --gguf` do with a file: read it, then (when its model differs from the
    unmutated `base` file's, or there is no base) decode two tokens. Decoding a file whose model is the base's
    again would only re-test the base, at ~1 s per case with the reference matmul."""
    import torch

    from qlab.engine.gguf_io import read_gguf
    from qlab.engine.model import Qwen35, prefill
    from qlab.engine.ops import reference_backend
    from qlab.errors import QlabError

    try:
        w = read_gguf(path, check_memory=False)
        if base is not None:
            if base not in _BASE_CONFIGS:
                _BASE_CONFIGS[base] = read_gguf(base, check_memory=False).cfg
            if _BASE_CONFIGS[base] == replace(w.cfg, name=_BASE_CONFIGS[base].name):   # the name is the file's
                return "ok"
        m = Qwen35(w, reference_backend())
        prefill(m, torch.tensor([[1, 2]]), m.new_state(4))
        return "ok"
    except QlabError as e:
        return "clear " + str(e).replace("\n", " | ")
    except Exception as e:  # noqa: BLE001 - the point is to report it
        return f"other {type(e).__name__}: {e}"


if __name__ == "__main__":
    for line in sys.stdin:
        print(json.dumps(run_case(*line.rstrip("\n").split("\t"))), flush=True)   # one line, whatever it says
