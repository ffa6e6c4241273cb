"""The benchmark scripts run from their documented command lines (issue 8: "the benchmark runs
from one command on the CPU"). Smoke tests only: no wall-clock number is asserted here (timing
ratios belong to the benchmarks' own reports, not to a test suite on a shared machine); what is
asserted is that each script finishes, exits 0 and prints its JSON line with the expected keys
and finite, positive times.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load(name: str) -> ModuleType:
    """Import a benchmark script as a module, as ``python benchmarks/<name>.py`` would see it."""
    if str(BENCH) not in sys.path:  # the scripts import their helpers (``_memory``) from benchmarks/
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_bench_step_quick_runs_in_process_and_restores_the_torch_settings():
    bench = _load("bench_step")
    threads = torch.get_num_threads()
    report = bench.main(["--quick", "--reps", "1", "--warmup", "0", "--no-eval", "--threads", "1"])
    assert torch.get_num_threads() == threads  # main gives back what it set
    assert report["command"].startswith("bench_step --quick")
    summary = report["summary"]
    assert set(summary["ms"]) >= {"sasrec bce", "s4rec bce", "plain sasrec bce"}
    assert all(math.isfinite(ms) and ms > 0 for ms in summary["ms"].values())
    assert summary["sasrec_vs_plain"] > 0 and summary["s4rec_vs_sasrec"] > 0


def test_bench_step_refuses_cuda_without_cuda():
    if torch.cuda.is_available():
        return
    done = subprocess.run([sys.executable, str(BENCH / "bench_step.py"), "--device", "cuda"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert "--device cuda: CUDA is not available" in done.stderr


def test_bench_next_item_and_bench_augment_print_their_json_line():
    runs = {
        "bench_next_item": ["--cases", "64:0.5", "--chunks", "32", "--rounds", "1", "--threads", "1"],
        "bench_augment": ["--threads", "1", "--repeats", "1"],
    }
    for name, args in runs.items():
        done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        line = _last_json_line(done.stdout)
        assert line, name
