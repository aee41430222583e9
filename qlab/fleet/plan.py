"""Which profile runs go where: one slot per CPU node, or one per GPU on a GPU node.

Works on the dicts `ray.nodes()` returns, so it is tested without a cluster. A slot's key names the machine
(and GPU) in file names and in the manifest, and stays the same when the node restarts under a new Ray id,
which is what lets `--resume` skip the machines whose profile is complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qlab.errors import QlabError

# A node may name itself for the fleet: `ray start ... --labels qlab-node=NAME` (else its host name is used).
NODE_LABEL = "qlab-node"


@dataclass(frozen=True)
class Slot:
    key: str           # file-safe name: host (or label), plus "-gpuN" for a per-GPU slot
    node_id: str       # Ray's node id, for NodeAffinitySchedulingStrategy
    host: str
    cpus: float        # CPUs the task asks for: the whole node's, so nothing else of ours shares it
    gpus: int          # 1 for a per-GPU slot, else 0
    labels: tuple[tuple[str, str], ...] = ()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "node"


def _node_name(node: dict) -> str:
    labels = node.get("Labels") or {}
    if labels.get(NODE_LABEL):
        return labels[NODE_LABEL]
    name = node.get("NodeName") or ""
    if name and not re.fullmatch(r"[0-9.:]+", name):  # Ray's default node name is its IP address
        return name
    return node.get("NodeManagerHostname") or name or node.get("NodeID", "node")[:8]


def _matches(node: dict, selector: str) -> bool:
    """`--nodes LABEL`: a node label value or key=value, a custom resource name, a host or node name."""
    labels = node.get("Labels") or {}
    if "=" in selector:
        k, v = selector.split("=", 1)
        return labels.get(k) == v
    return (selector in labels.values() or selector in (node.get("Resources") or {})
            or selector in (node.get("NodeManagerHostname"), node.get("NodeName"), _node_name(node)))


def plan_slots(nodes: list[dict], selector: str = "all", device: str = "auto") -> list[Slot]:
    """Slots for the alive nodes that can run a profile (have CPUs), filtered by `selector`.

    `device` is the profile's `--gpu`: "cpu" profiles each node's CPU even where it has GPUs; anything
    else gives a GPU node one slot per GPU (Ray hands each task its own device) and a CPU node one slot.
    """
    alive = [n for n in nodes if n.get("Alive") and (n.get("Resources") or {}).get("CPU", 0) > 0]
    chosen = alive if selector in ("all", "") else [n for n in alive if _matches(n, selector)]
    if not chosen:
        names = ", ".join(sorted({_node_name(n) for n in alive})) or "none"
        raise QlabError(f"--nodes {selector}: no alive node with CPUs matches; nodes: {names}")
    names = [_node_name(n) for n in chosen]
    slots = []
    for node, name in zip(chosen, names):
        if names.count(name) > 1:  # two Ray nodes on one host without labels: tell them apart by Ray id
            name = f"{name}-{node['NodeID'][:8]}"
        res = node.get("Resources") or {}
        base = dict(node_id=node["NodeID"], host=node.get("NodeManagerHostname") or "", cpus=float(res["CPU"]),
                    labels=tuple(sorted((k, str(v)) for k, v in (node.get("Labels") or {}).items()
                                        if not k.startswith("ray.io/"))))
        gpus = int(res.get("GPU", 0)) if device != "cpu" else 0
        if gpus:
            # GPUs share the node's CPUs: each per-GPU task asks for an equal share.
            share = max(1.0, float(res["CPU"]) // gpus)
            slots += [Slot(key=f"{_safe(name)}-gpu{i}", gpus=1, **(base | {"cpus": share})) for i in range(gpus)]
        else:
            slots.append(Slot(key=_safe(name), gpus=0, **base))
    return slots
