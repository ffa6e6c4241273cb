"""Run a plan of training runs side by side and collect their results (for a short GPU lease).

A plan is a text file with one run per line: a name, then ``train.py`` arguments. Blank lines
and ``#`` comments are skipped::

    # name                     train.py arguments
    Beauty-iclrec-bce-s0       --data Beauty --preset iclrec --seed 0
    Beauty-cl4srec-bce-s0      --data Beauty --preset cl4srec --seed 0

Every run goes to ``WORK/NAME`` (checkpoints stay there) with its log beside it; when it ends,
its ``results.json`` is copied to ``OUTPUT/NAME.json`` and its log to ``OUTPUT/NAME.log`` (the
small files worth bringing back from a lent machine). ``--jobs`` runs go at once; one GPU holds
many of these small models, so a lease is spent on runs, not on waiting::

    python examples/s4rec/batch.py --plan examples/s4rec/plans/gpu-beauty.txt --jobs 8 \\
        --output "$OUT" -- --device cuda --threads 2 --max-minutes 9

Arguments after ``--`` are appended to every run's line (device, threads, a time budget). A run
that fails does not stop the others; the exit status is 1 if any failed. A plan line whose
``WORK/NAME`` already holds a run that was killed or cut by its ``--max-minutes`` is resumed
(``--resume``) instead of restarted; one that stopped early or at its epoch cap is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s4rec_example.loop import run_is_over  # this script's folder is on sys.path

HERE = Path(__file__).resolve().parent
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+=")


@dataclass(frozen=True)
class Job:
    name: str
    args: list[str]


def read_plan(path: Path) -> list[Job]:
    """The runs of a plan file, each name unique and safe as a folder name."""
    jobs: list[Job] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, *args = shlex.split(line)
        if not set(name) <= _NAME_CHARS or name.startswith(".") or name.startswith("-"):
            raise SystemExit(f"{path}:{number}: run name {name!r} must be letters, digits and -_.+= only")
        if any(a in ("--output", "--resume") or a.startswith(("--output=", "--resume=")) for a in args):
            raise SystemExit(f"{path}:{number}: the batch sets --output / --resume itself")
        if any(job.name == name for job in jobs):
            raise SystemExit(f"{path}:{number}: run name {name!r} appears twice")
        jobs.append(Job(name, args))
    if not jobs:
        raise SystemExit(f"{path}: no runs in the plan")
    return jobs


_PER_CALL_VALUED = ("--device", "--threads", "--max-minutes", "--eval-batch-size")


def per_call_flags(extra: list[str]) -> list[str]:
    """The flags of ``extra`` that ``train.py --resume`` accepts (device, threads, budget)."""
    kept: list[str] = []
    tokens = iter(extra)
    for token in tokens:
        flag = token.split("=", 1)[0]
        if flag in _PER_CALL_VALUED:
            kept += [token] if "=" in token else [token, next(tokens, "")]
        elif flag == "--debug":
            kept.append(token)
    return kept


def _record(folder: Path) -> dict[str, Any] | None:
    """The run's ``results.json``, or ``None`` when there is none that reads as a JSON object."""
    try:
        record = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def run_job(job: Job, extra: list[str], work: Path, output: Path) -> tuple[str, int, float]:
    folder = work / job.name
    record = _record(folder)
    train = [sys.executable, str(HERE / "train.py")]
    if record is not None and run_is_over(record):
        code, elapsed = 0, 0.0  # kept as it is
    else:
        if record is not None and (folder / "last.pt").is_file():
            # a resumed run keeps its saved settings; only the per-call flags are passed again
            command = [*train, "--resume", str(folder), "--quiet", *per_call_flags(extra)]
        else:
            command = [*train, *job.args, "--quiet", *extra, "--output", str(folder), "--overwrite"]
        start = time.monotonic()
        with open(work / f"{job.name}.log", "ab") as log:
            log.write(("$ " + shlex.join(command) + "\n").encode())
            log.flush()
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent.parent)
        elapsed = time.monotonic() - start
    if (folder / "results.json").is_file():
        shutil.copyfile(folder / "results.json", output / f"{job.name}.json")
    if (work / f"{job.name}.log").is_file():
        shutil.copyfile(work / f"{job.name}.log", output / f"{job.name}.log")
    return job.name, code, elapsed


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", type=Path, required=True, help="plan file: NAME train.py-args per line")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default: 2)")
    parser.add_argument("--work", type=Path, default=Path("runs"), help="run folders (default: runs)")
    parser.add_argument("--output", type=Path, required=True, help="where results.json and logs are copied")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    jobs = read_plan(args.plan)
    args.work.mkdir(parents=True, exist_ok=True)
    args.output.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(lambda job: run_job(job, extra, args.work, args.output), jobs))
    failed = 0
    print(f"{'run':40s} {'exit':>4s} {'minutes':>7s} {'valid NDCG@20':>13s} {'test NDCG@20':>12s}")
    for name, code, elapsed in outcomes:
        failed += code != 0
        try:
            results = json.loads((args.output / f"{name}.json").read_text())
        except (OSError, ValueError):
            results = {}
        valid = results.get("valid", {}).get("NDCG@20")
        test = (results.get("test") or {}).get("NDCG@20")
        print(f"{name:40s} {code:4d} {elapsed / 60:7.1f} "
              f"{'-' if valid is None else f'{valid:.4f}':>13s} {'-' if test is None else f'{test:.4f}':>12s}")
    summary = {"runs": len(outcomes), "failed": failed, "output": str(args.output)}
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
