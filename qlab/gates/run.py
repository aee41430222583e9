"""Run pytest-benchmark suites into a JSON file (the same format a user's saved runs have)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from qlab.errors import EXIT_INTERNAL, QlabError

REPO = Path(__file__).resolve().parents[2]
# The gate times what users run (bench_product.py: the CPU decode loop's paths); the other suites in benchmarks/
# (every torch_cpu format, the naive references, the predictor) are for study, and the naive references are
# checked for correctness by the tests, not timed.
DEFAULT_SUITES = ("benchmarks/bench_probes.py", "benchmarks/bench_product.py")


def run_suites(suites: list[str], out_json: Path, extra_args: list[str] = (), keyword: str | None = None) -> Path:
    """`pytest SUITES --benchmark-enable --benchmark-json OUT`; the probes always run with the suites."""
    paths = [str(REPO / s) if not Path(s).is_absolute() and (REPO / s.split("::")[0]).exists() else s for s in suites]
    missing = [p for p in paths if not Path(p.split("::")[0]).exists()]
    if missing:
        raise QlabError(f"benchmark suite(s) not found: {', '.join(missing)}")
    probes = str(REPO / "benchmarks" / "bench_probes.py")
    if probes not in paths and (REPO / "benchmarks" / "bench_probes.py").exists():
        paths.insert(0, probes)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths, "--benchmark-enable",
           "--benchmark-only", f"--benchmark-json={out_json}", "-m", "not peer", *extra_args]
    if keyword:
        cmd += ["-k", keyword]
    proc = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    if proc.returncode not in (0, 5) or not Path(out_json).exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        # a benchmark that crashes is an internal error (exit 3), not a regression (1) nor bad input (2)
        raise QlabError(f"benchmark run failed (pytest exit {proc.returncode}):\n{tail}", exit_code=EXIT_INTERNAL)
    return Path(out_json)


def default_suites() -> list[str]:
    return [s for s in DEFAULT_SUITES if (REPO / s).exists()]


def temp_json() -> Path:
    return Path(tempfile.mkdtemp(prefix="qlab-bench-")) / "current.json"
