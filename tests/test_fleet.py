"""`qlab fleet`: slot planning on Ray's node records, the manifest and resume, and a real local Ray cluster
(three worker nodes on this machine) with one node killed mid-run and recovered by --resume."""

import json
import sys
import threading
import time

import pytest

from qlab.cli import main
from qlab.errors import QlabError
from qlab.fleet.manifest import Manifest
from qlab.fleet.plan import plan_slots


def _node(nid, host="h1", cpus=4.0, gpus=0, labels=None, alive=True, name=None):
    res = {"CPU": cpus, "memory": 1e9} | ({"GPU": float(gpus)} if gpus else {})
    return {"NodeID": nid * 8, "NodeName": name or "10.0.0.1", "Alive": alive, "Resources": res,
            "Labels": (labels or {}) | {"ray.io/node-id": nid}, "NodeManagerHostname": host}


def test_plan_one_slot_per_cpu_node_and_per_gpu():
    nodes = [_node("a", "box1"), _node("b", "box2", cpus=16, gpus=2), _node("c", "dead", alive=False),
             _node("h", "head", cpus=0)]
    slots = plan_slots(nodes)
    assert [s.key for s in slots] == ["box1", "box2-gpu0", "box2-gpu1"]
    assert [s.gpus for s in slots] == [0, 1, 1]
    assert slots[0].cpus == 4.0 and slots[1].cpus == 8.0   # a GPU slot takes its share of the node's CPUs
    assert [s.key for s in plan_slots(nodes, device="cpu")] == ["box1", "box2"]   # --gpu cpu: the CPUs only


def test_plan_labels_selectors_and_duplicate_hosts():
    nodes = [_node("a", "vm", labels={"qlab-node": "alpha", "rack": "r1"}), _node("b", "vm"), _node("c", "vm")]
    keys = [s.key for s in plan_slots(nodes)]
    assert keys[0] == "alpha" and keys[1].startswith("vm-") and keys[1] != keys[2]
    assert [s.key for s in plan_slots(nodes, "rack=r1")] == ["alpha"]
    assert [s.key for s in plan_slots(nodes, "alpha")] == ["alpha"]
    with pytest.raises(QlabError, match="--nodes gpu-box: no alive node"):
        plan_slots(nodes, "gpu-box")


def test_manifest_resume_refuses_other_flags_and_missing_run(tmp_path):
    m = Manifest.start(tmp_path, ["--quick"], "auto", resume=False)
    m.record("alpha", status="done", profile="alpha.json")
    assert not m.complete("alpha")            # done, but its profile file is gone: not complete
    (tmp_path / "alpha.json").write_text("{}")
    assert m.complete("alpha")
    with pytest.raises(QlabError, match="holds a fleet run already"):
        Manifest.start(tmp_path, ["--quick"], "auto", resume=False)
    with pytest.raises(QlabError, match="used profile flags"):
        Manifest.start(tmp_path, ["--full"], "auto", resume=True)
    with pytest.raises(QlabError, match="no fleet run"):
        Manifest.start(tmp_path / "other", ["--quick"], "auto", resume=True)


def test_cli_passes_profile_flags_through_and_checks_them(tmp_path, monkeypatch, capsys):
    from qlab.cli import build_parser
    from qlab.fleet.task import profile_argv_from

    args = build_parser().parse_args(["fleet", "profile", "--quick", "--quants", "Q8_0", "--budget", "5",
                                      "--address", "auto", "--out", str(tmp_path)])
    assert profile_argv_from(args) == ["--quick", "--quants", "Q8_0", "--budget", "5.0"]
    assert main(["fleet", "profile", "--quants", "Q9_9", "--out", str(tmp_path / "x")]) == 2
    assert "unknown quant 'Q9_9'" in capsys.readouterr().err


def test_without_ray_the_command_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError
    assert main(["fleet", "profile", "--quick", "--out", str(tmp_path / "f")]) == 2
    assert "pip install -e '.[fleet]'" in capsys.readouterr().err


@pytest.mark.slow
def test_local_cluster_profiles_every_node_recovers_a_killed_one_and_reports(tmp_path):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from qlab.fleet.driver import FleetOptions, run_fleet
    from qlab.fleet.report import compare_fleet, load_fleet, write_fleet_report

    # A quick profile cut short by its budget (detect, microbenchmarks, calibration, predictions; tuning and
    # the decode slice skipped): the real profile code, small enough for three at once on 2 cores.
    argv = ["--quick", "--quants", "Q8_0", "--contexts", "256", "--budget", "1", "--threads", "1"]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        nodes = {n: cluster.add_node(num_cpus=1, labels={"qlab-node": n}) for n in ("alpha", "beta", "gamma")}
        out = tmp_path / "fleet"
        lines, killer = [], []

        def emit(line):
            lines.append(line)
            if line.startswith("fleet: beta: started") and not killer:   # kill beta's node while it profiles
                killer.append(threading.Timer(2.0, cluster.remove_node, args=(nodes["beta"], False)))
                killer[0].start()

        opts = FleetOptions(address=cluster.address, profile_argv=argv, out=out, retries=1)
        doc = run_fleet(opts, emit=emit)
        killer[0].join()
        status = {k: s["status"] for k, s in doc["slots"].items()}
        assert status["alpha"] == status["gamma"] == "done", lines
        assert status["beta"] in ("lost", "failed") and doc["slots"]["beta"]["error"], lines
        assert sorted(p.name for p in out.glob("*.json")) == ["alpha.json", "fleet.json", "gamma.json"]

        cluster.add_node(num_cpus=1, labels={"qlab-node": "beta"})   # the machine comes back
        lines.clear()
        doc = run_fleet(FleetOptions(address=cluster.address, profile_argv=argv, out=out, resume=True), emit=emit)
        assert "2 already complete" in lines[0], lines
        assert [ln for ln in lines if "started" in ln] == [ln for ln in lines if "beta: started" in ln] != []
        assert all(s["status"] == "done" for s in doc["slots"].values())
        assert doc["slots"]["beta"]["attempts"] >= 2
    finally:
        ray.shutdown()
        cluster.shutdown()

    comparison = compare_fleet(load_fleet(out))
    assert [m["key"] for m in comparison["machines"]] == ["alpha", "beta", "gamma"]
    assert comparison["failed"] == []
    read = next(s for s in comparison["spread"] if s["metric"] == "read GB/s")
    assert read["n"] == 3 and read["min"] > 0            # three machines of one class, measured for real
    html = write_fleet_report(tmp_path / "fleet.html", comparison).read_text()
    assert html.count("<td>alpha</td>") >= 1 and "Spread between machines" in html
    json.dumps(comparison)                               # the comparison is plain JSON
