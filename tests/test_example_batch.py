"""examples/s4rec/batch.py: a plan of runs side by side, results collected, finished runs kept,
interrupted ones resumed, a failing run reported without stopping the others, bad plans refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "s4rec"))

import batch  # noqa: E402
from s4rec_example import cli  # noqa: E402

TINY = "--synthetic-users 60 --synthetic-items 30 --max-len 8 --hidden-size 8 --batch-size 32 --num-prototypes 4"


def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.txt"
    path.write_text(text)
    return path


def test_runs_the_plan_collects_results_and_keeps_finished_runs(tmp_path, capsys):
    plan = _plan(tmp_path, f"# two runs\n\na-sasrec  --preset sasrec --epochs 2 {TINY}\n"
                           f"b-s4rec   --preset s4rec --epochs 1 {TINY}  # trailing comment\n")
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["--plan", str(plan), "--jobs", "2", "--work", str(work), "--output", str(out), "--", "--threads", "1"]
    assert batch.main(argv) == 0
    first = {name: json.loads((out / f"{name}.json").read_text()) for name in ("a-sasrec", "b-s4rec")}
    assert first["a-sasrec"]["epochs_run"] == 2 and first["b-s4rec"]["epochs_run"] == 1
    assert all(r["status"] == "finished" and r["test"] for r in first.values())
    assert (out / "a-sasrec.log").is_file() and not list(out.glob("*.pt"))
    assert (work / "a-sasrec" / "best.pt").is_file()  # checkpoints stay in the work folder
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "runs": 2, "failed": 0, "output": str(out)}
    stamp = (work / "a-sasrec" / "results.json").stat().st_mtime_ns
    assert batch.main(argv) == 0  # a second call finds both finished and trains nothing
    assert (work / "a-sasrec" / "results.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("how", ["killed", "cut by its budget"])
def test_an_interrupted_run_is_resumed_to_the_uninterrupted_result(how, tmp_path):
    args = ["--preset", "sasrec", "--epochs", "3", *TINY.split(), "--quiet"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = cli.train([*args, "--output", str(tmp_path / "whole")])
        if how == "killed":
            part = cli.train([*args, "--output", str(tmp_path / "work" / "r")], stop_after_epochs=1)
        else:
            part = cli.train([*args, "--output", str(tmp_path / "work" / "r"), "--max-minutes", "0"])
    finally:
        torch.set_num_threads(threads)
    assert part["status"] == ("interrupted" if how == "killed" else "finished") and part["epochs_run"] == 1
    plan = _plan(tmp_path, "r " + " ".join(args) + "\n")
    assert batch.main(["--plan", str(plan), "--work", str(tmp_path / "work"), "--output", str(tmp_path / "out"),
                       "--", "--threads", "1", "--hidden-size", "64"]) == 0  # not a per-call flag: dropped
    resumed = json.loads((tmp_path / "out" / "r.json").read_text())
    assert resumed["epochs_run"] == 3 and resumed["test"] == whole["test"]
    assert "--resume" in (tmp_path / "out" / "r.log").read_text()


def test_a_failing_run_fails_the_batch_but_not_the_other_runs(tmp_path, capsys):
    plan = _plan(tmp_path, f"bad --preset nope\ngood --preset sasrec --epochs 1 {TINY}\n")
    code = batch.main(["--plan", str(plan), "--work", str(tmp_path / "w"), "--output", str(tmp_path / "o"),
                       "--", "--threads", "1"])
    assert code == 1
    assert json.loads((tmp_path / "o" / "good.json").read_text())["status"] == "finished"
    assert "nope" in (tmp_path / "o" / "bad.log").read_text()
    assert '"failed": 1' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no runs"),
        ("# only a comment\n", "no runs"),
        ("a --preset sasrec\na --preset s4rec\n", "appears twice"),
        ("../escape --preset sasrec\n", "must be letters"),
        ("-x --preset sasrec\n", "must be letters"),
        ("a --preset sasrec --output elsewhere\n", "sets --output"),
        ("a --resume=somewhere\n", "sets --output / --resume"),
    ],
)
def test_bad_plans_are_refused_with_their_line(tmp_path, text, message):
    plan = _plan(tmp_path, text)
    with pytest.raises(SystemExit, match=message):
        batch.main(["--plan", str(plan), "--output", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_per_call_flags_keep_only_what_resume_accepts():
    extra = ["--device", "cuda", "--threads=2", "--lr", "0.1", "--max-minutes", "9", "--debug", "--eval-batch-size", "8"]
    assert batch.per_call_flags(extra) == ["--device", "cuda", "--threads=2", "--max-minutes", "9", "--debug",
                                           "--eval-batch-size", "8"]


def test_the_shipped_plans_parse_and_name_known_presets():
    from s4rec_example.config import PRESETS

    plans = sorted((ROOT / "examples" / "s4rec" / "plans").glob("*.txt"))
    assert plans
    for plan in plans:
        for job in batch.read_plan(plan):
            preset = job.args[job.args.index("--preset") + 1]
            assert preset in PRESETS, (plan.name, job.name)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
def test_the_lease_script_runs_a_plan_and_sends_back_one_archive(tmp_path):
    """plans/lease.sh on the CPU (LEASE_DEVICE=cpu): the plan's runs finish with a test inside
    the budget, and $OUT holds two archives (a lent machine returns only a few files), without
    checkpoints."""
    plan = _plan(tmp_path, "A-sasrec --preset sasrec --epochs 2 --synthetic-users 120 --synthetic-items 60\n")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "LEASE_DEVICE": "cpu", "LEASE_WORK": str(tmp_path / "runs"),
           "PYTHON": sys.executable}
    script = ROOT / "examples" / "s4rec" / "plans" / "lease.sh"
    proc = subprocess.run(["bash", str(script), "150", str(plan), "none"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["lease.tar.gz", "runs.tar.gz"]
    with tarfile.open(out / "lease.tar.gz") as tar:
        member = tar.extractfile("./runs/A-sasrec.json")
        assert member is not None
        results = json.loads(member.read())
        assert "./machine.txt" in tar.getnames()
    assert results["status"] == "finished" and results["test"]["NDCG@20"] >= 0
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert "runs/A-sasrec/results.json" in names and not any(n.endswith(".pt") for n in names)
    assert (tmp_path / "runs" / "A-sasrec" / "best.pt").is_file()  # checkpoints stay on the machine
