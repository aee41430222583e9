"""Places one profile task per slot on a Ray cluster, streams results back as they finish, retries a task
whose worker crashed on a node that is still alive, and records a lost node with its error.

Nothing here measures: `task.run_profile_here` is the ordinary profile code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qlab import __version__
from qlab.errors import QlabError
from qlab.fleet.manifest import Manifest
from qlab.fleet.plan import Slot, plan_slots
from qlab.io import write_json_atomic


@dataclass
class FleetOptions:
    address: str
    profile_argv: list[str]
    out: Path
    nodes: str = "all"
    resume: bool = False
    retries: int = 1          # re-submissions after a crash on a node that is still alive
    timeout_s: float | None = None
    device: str = "auto"      # the profile's --gpu, to plan per-GPU slots


def import_ray():
    try:
        import ray
    except ImportError:
        raise QlabError("qlab fleet needs Ray: pip install -e '.[fleet]' (or pip install 'ray>=2.9')") from None
    return ray


def connect(ray, address: str) -> None:
    """`auto`: the cluster this machine belongs to (RAY_ADDRESS or a running `ray start`); `local`: a
    one-node Ray started here; `ray://HOST:PORT` (Ray Client) or `HOST:PORT` (the head's GCS)."""
    if ray.is_initialized():
        return
    kwargs = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise QlabError(f"--address {address}: cannot connect to a Ray cluster ({str(e).splitlines()[0]}); "
                        f"start one with `ray start --head`, or pass ray://HOST:10001") from None


def run_fleet(opts: FleetOptions, emit: Callable[[str], None] = print) -> dict:
    """Run the fleet; returns the manifest document. Raises QlabError on bad input."""
    from qlab.fleet.task import parse_profile_args, run_profile_here

    parse_profile_args(opts.profile_argv)  # bad profile flags fail here, not on every node
    opts.out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.start(opts.out, opts.profile_argv, opts.address, opts.resume)
    ray = import_ray()
    connect(ray, opts.address)
    slots = plan_slots(ray.nodes(), opts.nodes, opts.device)
    todo = [s for s in slots if not manifest.complete(s.key)]
    skipped = len(slots) - len(todo)
    emit(f"fleet: {len(slots)} slot(s) on {len({s.node_id for s in slots})} node(s)"
         + (f"; {skipped} already complete (--resume)" if skipped else ""))
    remote = ray.remote(max_retries=0)(run_profile_here)  # retries are ours: we know which node is alive
    pending: dict = {}
    started: dict[str, float] = {}

    def submit(slot: Slot) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(slot.node_id, soft=False, _fail_on_unavailable=True)
        ref = remote.options(num_cpus=slot.cpus, num_gpus=slot.gpus, scheduling_strategy=strategy).remote(
            opts.profile_argv, slot.key)
        pending[ref] = slot
        started[slot.key] = time.monotonic()
        attempts = manifest.doc["slots"].get(slot.key, {}).get("attempts", 0) + 1
        manifest.record(slot.key, status="running", attempts=attempts, node_id=slot.node_id, host=slot.host,
                        labels=dict(slot.labels), error=None)
        emit(f"fleet: {slot.key}: started on {slot.host or slot.node_id[:8]}"
             + (f" (attempt {attempts})" if attempts > 1 else ""))

    for slot in todo:
        submit(slot)
    finished = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
        for ref in ready:
            slot = pending.pop(ref)
            finished += 1
            _collect(ray, ref, slot, manifest, opts, emit, submit, f"[{finished}/{len(todo)}]")
        if opts.timeout_s:
            for ref, slot in list(pending.items()):
                if time.monotonic() - started[slot.key] > opts.timeout_s:
                    ray.cancel(ref, force=True)
                    pending.pop(ref)
                    finished += 1
                    manifest.record(slot.key, status="failed", error=f"timed out after {opts.timeout_s:g} s")
                    emit(f"fleet: [{finished}/{len(todo)}] {slot.key}: failed: timed out")
    return manifest.doc


def _collect(ray, ref, slot: Slot, manifest: Manifest, opts: FleetOptions, emit, submit, count: str) -> None:
    try:
        result = ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # the profile code itself raised: deterministic, not retried
        cause = e.cause if getattr(e, "cause", None) is not None else e
        msg = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        manifest.record(slot.key, status="failed", error=f"{type(cause).__name__}: {msg}"[:500])
        emit(f"fleet: {count} {slot.key}: failed: {msg}")
        return
    except ray.exceptions.RayError as e:  # the worker or the node went away
        alive = any(n["NodeID"] == slot.node_id and n.get("Alive") for n in ray.nodes())
        attempts = manifest.doc["slots"][slot.key].get("attempts", 1)
        why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]
        if alive and attempts <= opts.retries:
            emit(f"fleet: {slot.key}: {type(e).__name__} on a node that is alive; retrying")
            manifest.record(slot.key, status="retrying", error=why)
            submit(slot)
            return
        manifest.record(slot.key, status="lost" if not alive else "failed", error=why)
        emit(f"fleet: {count} {slot.key}: {'node lost' if not alive else 'failed'}: {why}")
        return
    name = f"{slot.key}.json"
    write_json_atomic(manifest.out / name, result["profile"])
    doc = result["profile"]
    dev = doc.get("device", {})
    warn = None if result.get("qlab_version") == __version__ else \
        f"node runs qlab {result.get('qlab_version')}, the driver {__version__}"
    manifest.record(slot.key, status="done", profile=name, seconds=result.get("seconds"),
                    device_id=dev.get("id"), device_name=dev.get("name"), fingerprint=doc.get("fingerprint"),
                    gpu_ids=result.get("gpu_ids"), host=result.get("host") or slot.host, warning=warn)
    emit(f"fleet: {count} {slot.key}: done in {result.get('seconds', 0):.0f} s: {dev.get('name')} "
         f"({dev.get('id')}) -> {manifest.out / name}" + (f" [warning: {warn}]" if warn else ""))
