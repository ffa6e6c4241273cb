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

import pytest
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


def test_bench_step_compiled_step_draws_the_views_outside(monkeypatch):
    """``--compile``: the example's views are drawn eagerly and handed to the compiled forward
    (dynamo's eager backend here: its tracing without code generation)."""
    bench = _load("bench_step")
    compiled_calls = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):
        wrapped = real_compile(model, backend="eager")

        def call(*args, **kw):
            compiled_calls.append(kw.get("views") is not None)
            return wrapped(*args, **kw)

        return call

    monkeypatch.setattr(bench.torch, "compile", eager_compile)
    device = torch.device("cpu")
    data, _ = bench.load_data(device)
    batches = bench.make_batches(data, 128, device)[:1]  # b >= the 128 prototypes
    previous = bench.s4rec_components.validate_args_enabled()
    bench.s4rec_components.set_validate_args(False)
    try:
        for preset, views in (("s4rec", True), ("sasrec", False)):
            step = bench.example_step(preset, "bce", layers=1, batches=batches, num_items=data.num_items,
                                      device=device, compile=True, amp=None)
            step()
            assert compiled_calls[-1] is views
    finally:
        bench.s4rec_components.set_validate_args(previous)
        torch._dynamo.reset()


def test_bench_step_refuses_cuda_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = subprocess.run([sys.executable, str(BENCH / "bench_step.py"), "--device", "cuda"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert "--device cuda: CUDA is not available" in done.stderr


def test_bench_next_item_and_bench_augment_print_their_json_line():
    done = subprocess.run([sys.executable, str(BENCH / "bench_next_item.py"), "--cases", "64:0.5", "--chunks",
                           "32", "--rounds", "1", "--threads", "1"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    times = _last_json_line(done.stdout)["ms"]["64:0.5"]
    assert {"plain masked", "fused 32", "fused auto"} <= set(times)
    assert all(math.isfinite(ms) and ms > 0 for ms in times.values())
    done = subprocess.run([sys.executable, str(BENCH / "bench_augment.py"), "--threads", "1", "--repeats", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = _last_json_line(done.stdout)
    assert math.isfinite(line["vectorised_ms"]) and line["vectorised_ms"] > 0
    assert line["speedup_over_torch_loop"] > 0


def test_bench_evaluation_scale_case_writes_its_record(tmp_path):
    """The memory-at-scale case on a small generated catalogue, with ``--output``."""
    out = tmp_path / "eval.json"
    done = subprocess.run([sys.executable, str(BENCH / "bench_evaluation.py"), "--threads", "1", "--skip-ranking",
                           "--scale", "--scale-items", "2000", "--scale-catalogue-users", "500", "--scale-users", "64",
                           "--output", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["command"].startswith("python benchmarks/bench_evaluation.py --threads 1")
    assert record["machine"]["torch"] == torch.__version__ and "load_average_end" in record
    scale = record["summary"]["scale"]
    assert scale == _last_json_line(done.stdout)["scale"]
    assert scale["items"] == 2000 and scale["ranked_users"] == 64
    assert all(run["users_per_batch"] >= 1 and run["seconds"] >= 0 for run in scale["runs"])  # rounded: 0.0 here
