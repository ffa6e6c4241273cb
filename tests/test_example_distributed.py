"""The example under torch.distributed (issue 11.4): with a batch of B/N per rank, the first
step's gradients equal a 1-process step on the batch B, and ``--resume`` works under torchrun.

The gradient law: 2 gloo CPU processes build the ``sasrec`` model with the example's builder
(``build_model(config, n, distributed=True)``, wrapped in ``DistributedDataParallel`` as the
loop does), rank r takes the rows ``batch[r::2]`` of one fixed global batch (as the loop's
``Shard`` does), runs forward and backward once; DDP's averaged gradient of every parameter
must equal the gradient of one process on the whole batch from the same initial weights.
The ranks hold different numbers of real positions, so a per-rank mean of the SR loss would
break the law (DDP averages the rank means, not the positions). Dropout 0 and explicit
negatives (``bce``) make the two setups draw nothing at random.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _gloo import gloo_group
from s4rec_components import generate_synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "s4rec"))

from s4rec_example.checkpoint import load_checkpoint  # noqa: E402
from s4rec_example.config import TrainConfig  # noqa: E402
from s4rec_example.data import prepare  # noqa: E402
from s4rec_example.model import build_model  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "s4rec" / "train.py"
WORLD = 2
LOSSES = ("ce", "bce")
SMALL = dict(hidden_size=16, num_heads=2, max_len=10, dropout=0.0)
TOLERANCE = 1e-6
JOIN_TIMEOUT_S = 120.0


# ----------------------------------------------------------------------------- one step


def _step(case: dict[str, Any], loss: str, rank: int, world: int) -> dict[str, Any]:
    """Loss and parameter gradients of rank ``rank``'s rows ``batch[rank::world]`` after one backward."""
    config = TrainConfig.from_preset("sasrec", loss=loss, **SMALL)
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = build_model(config, case["num_items"], distributed=world > 1)
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    rows = slice(rank, None, world)
    negatives = case["negatives"][rows] if loss == "bce" else None
    terms = net(case["inputs"][rows], case["targets"][rows], negatives=negatives)
    terms["loss"].backward()
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}
    return {"loss": terms["loss"].detach().clone(), "grads": grads}


def _worker(rank: int, world: int, init_file: str, out: str, case: dict[str, Any]) -> None:
    result: Any
    try:
        with gloo_group(rank, world, init_file):
            result = {loss: _step(case, loss, rank, world) for loss in LOSSES}
    except Exception:  # reported to the parent, which fails the test
        result = traceback.format_exc()
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    """One global batch of 12 generated users whose two rank shards hold unequal numbers of real positions."""
    dataset = generate_synthetic(num_users=60, num_items=40, seed=5)
    config = TrainConfig.from_preset("sasrec", **SMALL)
    data = prepare(dataset, config, torch.device("cpu"))
    idx = torch.arange(12)
    inputs, targets = data.split.train_inputs[idx], data.split.train_targets[idx]
    negatives = data.sampler(idx, inputs.shape[1], torch.Generator().manual_seed(1))
    return {"num_items": data.num_items, "inputs": inputs, "targets": targets, "negatives": negatives}


@pytest.fixture(scope="module")
def distributed_results(case, tmp_path_factory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("gloo")
    context = mp.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(r, WORLD, os.fspath(folder / "init"), os.fspath(folder), case))
        for r in range(WORLD)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=JOIN_TIMEOUT_S)
        if process.is_alive():
            process.terminate()
            pytest.fail(f"a gloo worker did not finish within {JOIN_TIMEOUT_S} s")
    results = []
    for r in range(WORLD):
        result = torch.load(folder / f"rank{r}.pt", weights_only=False)
        if isinstance(result, str):
            pytest.fail(f"rank {r} failed:\n{result}")
        results.append(result)
    return results


@pytest.mark.parametrize("loss", LOSSES)
def test_first_step_gradients_of_two_ranks_equal_one_process_on_the_whole_batch(loss, case, distributed_results):
    real = case["targets"] != 0
    counts = [int(real[r::WORLD].sum()) for r in range(WORLD)]
    assert counts[0] != counts[1]  # else a per-rank mean would pass too: the law would not be tested
    single = _step(case, loss, 0, 1)
    ranks = [result[loss] for result in distributed_results]
    # every rank ends with DDP's average, the same gradient
    largest = 0.0
    for name, expected in single["grads"].items():
        got = [rank["grads"][name] for rank in ranks]
        if expected is None:
            assert all(g is None or not g.any() for g in got), name
            continue
        for g in got:
            assert g is not None, name
            largest = max(largest, float((g - expected).abs().max()))
            torch.testing.assert_close(g, expected, atol=TOLERANCE, rtol=0.0, msg=lambda m: f"{name}: {m}")
    # the mean of the ranks' losses is the single-process loss (what the loop logs)
    mean_loss = sum(rank["loss"] for rank in ranks) / WORLD
    torch.testing.assert_close(mean_loss, single["loss"], atol=TOLERANCE, rtol=0.0)
    print(f"\n{loss}: largest gradient difference, 2 ranks vs 1 process: {largest:.3g}")


# ----------------------------------------------------------------------------- --resume under torchrun

TINY = ["--synthetic-users", "120", "--synthetic-items", "40", "--max-len", "10", "--hidden-size", "16",
        "--batch-size", "32", "--num-prototypes", "8", "--eval-batch-size", "64", "--quiet", "--threads", "1"]
SLOW_WRITE_S = 1.0  # the kill window: last.pt of epoch 1 cannot land sooner than this after epoch 0's results


def _torchrun(*argv: str) -> list[str]:
    # --standalone: a free rendezvous port, so concurrent jobs on the machine do not collide
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
            str(TRAIN), *argv]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _kill_job(launcher: int) -> None:
    """SIGKILL a torchrun job: its workers (each in its own session, so by their own process
    groups) first, then the launcher, which would otherwise notice and stop them itself."""
    for worker in _children(launcher):
        try:
            os.killpg(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.kill(launcher, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_torchrun_job_killed_after_its_first_epoch_resumes_to_the_end(tmp_path):
    """A 2-process job of 2 epochs is SIGKILLed (workers and launcher) once epoch 0 is saved;
    ``torchrun ... --resume`` finishes it: one results.json, 2 epochs in its history."""
    folder = tmp_path / "ddp"
    results_file = folder / "results.json"
    env = {**os.environ, "S4REC_EXAMPLE_SLOW_WRITES": str(SLOW_WRITE_S)}
    job = subprocess.Popen(
        _torchrun("--preset", "s4rec", "--epochs", "2", "--output", str(folder), *TINY),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    saved = False
    try:
        while not saved and job.poll() is None and time.monotonic() < deadline:
            if results_file.exists():  # written after last.pt of the same epoch
                saved = json.loads(results_file.read_text()).get("epochs_run") == 1
            time.sleep(0.01)
    finally:
        _kill_job(job.pid)
        _, stderr = job.communicate(timeout=60)
    assert saved, f"epoch 0 was never saved (exit {job.returncode}):\n{stderr.decode()[-2000:]}"
    for leftover in folder.glob(".*.tmp"):  # what a killed write leaves: never read, safe to drop
        leftover.unlink()
    killed = json.loads(results_file.read_text())
    assert killed["status"] == "running" and killed["epochs_run"] == 1
    assert load_checkpoint(folder / "last.pt").state["epoch"] == 1  # the next epoch to run

    done = subprocess.run(_torchrun("--resume", str(folder), "--quiet", "--threads", "1"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(results_file.read_text())
    assert results["status"] == "finished" and results["stopped_by"] == "max_epochs"
    assert results["epochs_run"] == 2 and [h["epoch"] for h in results["history"]] == [0, 1]
    assert results["resumed_with"].startswith(f"torchrun --nproc_per_node {WORLD} ")
    assert results["test"] is not None
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "config.json", "last.pt", "results.json",
                                                        "train.log"]
    last = load_checkpoint(folder / "last.pt")
    assert last.state["world_size"] == WORLD and last.state["epoch"] == 2
