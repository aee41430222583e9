"""A profile belongs to one machine: its fingerprint, and the check that refuses to use it anywhere else.

The fingerprint (written by the detect and microbench stages, `doc["fingerprint"]`) holds the CPU (model, the
ISA flags that matter, cores, threads, memory size), the GPU when one was profiled (name, UUID, driver, clocks,
power limit) and the measured read bandwidth. `cpu-host` names whatever host runs qlab, so a host profile
calibrates only the host it was made on: `predict --profile`, `report --profiles` and `--resume` call
`require_this_machine`. A GPU profile describes that GPU wherever the prediction runs; it is compared only on
a machine that has an NVIDIA GPU itself (a different card or driver there is refused).
"""

from __future__ import annotations

from qlab.errors import QlabError

MEMORY_TOLERANCE = 0.03      # MemTotal moves a little with kernel reservations, never by 3 %
BANDWIDTH_RATIO = 2.0        # a steady probe of one host varies far less; the two EPYC kinds differ 3x


def _gpu_here() -> dict | None:
    from qlab.hwdb.detect import gpu_fingerprint, query_nvml

    raw = query_nvml(0)
    return gpu_fingerprint(raw) if raw else None


def fingerprint_here(gpu: bool = True) -> dict:
    """This machine's fingerprint, without measuring anything (no bandwidth)."""
    from qlab.hwdb.detect import cpu_fingerprint_here

    return {"cpu": cpu_fingerprint_here(), "gpu": _gpu_here() if gpu else None}


def differences(recorded: dict, here: dict, what: str = "cpu") -> list[str]:
    """Human-readable differences between a recorded and a current fingerprint part ("cpu" or "gpu")."""
    a, b = recorded.get(what) or {}, here.get(what) or {}
    out = []
    for key in sorted(set(a) | set(b)):
        if key == "kind":
            continue
        x, y = a.get(key), b.get(key)
        if x is None or y is None:
            continue  # a field one side could not read is no evidence of another machine
        if key == "memory_gb" and abs(x - y) <= MEMORY_TOLERANCE * max(x, y):
            continue
        if key == "flags" and x != y:
            only_a, only_b = sorted(set(x) - set(y)), sorted(set(y) - set(x))
            out.append(f"CPU flags: profile has {only_a or 'no others'}, this machine {only_b or 'no others'}")
            continue
        if x != y:
            out.append(f"{what} {key}: profile {x!r}, this machine {y!r}")
    ra, rb = recorded.get("read_gbs"), here.get("read_gbs")
    steady = not recorded.get("read_noisy") and not here.get("read_noisy")   # a loaded machine reads slow
    if what == "cpu" and steady and ra and rb and max(ra, rb) / min(ra, rb) > BANDWIDTH_RATIO:
        out.append(f"measured read bandwidth: profile {ra:.1f} GB/s, this machine {rb:.1f} GB/s")
    return out


def require_this_machine(doc: dict, where: str, here: dict | None = None) -> None:
    """Raise a one-line QlabError when `doc` (a profile) was measured on another machine than this one."""
    dev = doc.get("device") or {}
    source = dev.get("source")
    fp = doc.get("fingerprint")
    if source == "cpu":
        if not isinstance(fp, dict) or not isinstance(fp.get("cpu"), dict):
            raise QlabError(f"{where}: a profile of {dev.get('id', 'cpu-host')} without a machine fingerprint "
                            "(written by an older qlab) cannot be matched to this machine; "
                            "run `qlab profile --device auto` here")
        here = here or fingerprint_here(gpu=False)
        diff = differences(fp, here, "cpu")
    elif source == "nvml" and isinstance(fp, dict) and isinstance(fp.get("gpu"), dict):
        here = here or fingerprint_here(gpu=True)
        if not here.get("gpu"):
            return  # a profile of a GPU elsewhere describes that GPU; nothing here to confuse it with
        diff = differences(fp, here, "gpu")
    else:
        return
    if diff:
        raise QlabError(f"{where}: measured on another machine ({'; '.join(diff[:3])}); a profile calibrates only "
                        "the machine it was made on: run `qlab profile --device auto` here")


def record_fingerprint(doc: dict, detection_details: dict) -> None:
    """Put the detected fingerprint into the profile (the detect stage); the CPU part always, the host runs it."""
    from qlab.hwdb.detect import cpu_fingerprint_here

    fp = detection_details.get("fingerprint") or {}
    cpu = fp if fp.get("kind") == "cpu" else cpu_fingerprint_here()
    doc["fingerprint"] = {"cpu": cpu, "gpu": fp if fp.get("kind") == "gpu" else None}
