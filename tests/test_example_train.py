"""train.py (examples/s4rec/s4rec_example/cli.py): metrics against a slow reference, bit-exact
resume, argument checks before any work, run folders, safe checkpoints, kills at any moment."""

from __future__ import annotations

import json
import math
import os
import pickle
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "s4rec"))

from s4rec_example import cli  # noqa: E402
from s4rec_example.checkpoint import FORMAT, CheckpointError, load_checkpoint, load_model  # noqa: E402
from s4rec_example.config import TrainConfig  # noqa: E402
from s4rec_example.data import load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "s4rec" / "train.py"
TINY = ["--synthetic-users", "120", "--synthetic-items", "40", "--max-len", "10", "--hidden-size", "16",
        "--batch-size", "32", "--num-prototypes", "8", "--eval-batch-size", "64", "--quiet"]


def _train(folder: Path, *extra: str, preset: str = "s4rec", epochs: int = 3, **kwargs):
    argv = ["--preset", preset, "--epochs", str(epochs), "--output", str(folder), *TINY, *extra]
    return cli.train(argv, **kwargs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "s4rec"
    return folder, _train(folder)


def _slow_metrics(model, split, which: str) -> dict[str, float]:
    """Per-user loop: score every item 1..n, drop earlier items, count the items scored higher."""
    encoder = model.encoder.eval()
    sums = {f"{m}@{k}": 0.0 for m in ("HR", "NDCG") for k in (5, 10, 20)}
    history = split.history(which)
    with torch.no_grad():
        for u in range(split.num_users):
            h = encoder(split.inputs(which)[u : u + 1])[0, -1]
            scores = (encoder.item_embeddings.weight[1 : split.num_items + 1] @ h).tolist()
            target = int(split.targets(which)[u])
            seen = set(history.row(u).tolist()) if hasattr(history, "row") else set(history[u].tolist())
            rank = sum(1 for i, s in enumerate(scores, start=1)
                       if i != target and i not in seen and s >= scores[target - 1])
            for k in (5, 10, 20):
                if rank < k:
                    sums[f"HR@{k}"] += 1
                    sums[f"NDCG@{k}"] += 1 / torch.log2(torch.tensor(rank + 2.0)).item()
    return {key: value / split.num_users for key, value in sums.items()}


def test_reported_metrics_equal_a_slow_reference(finished):
    folder, results = finished
    assert results["status"] == "finished" and results["epochs_run"] == 3 and results["stopped_by"] == "max_epochs"
    model, checkpoint = load_model(folder / "best.pt")
    assert checkpoint.epoch == results["best_epoch"]
    split = load_dataset(checkpoint.config).split(max_len=10)
    for which in ("valid", "test"):
        expected = _slow_metrics(model, split, which)
        got = results["test"] if which == "test" else results["valid"]
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=2e-6), (which, key)
    assert [h["epoch"] for h in results["history"]] == [0, 1, 2]
    assert all("valid" in h and set(h["losses"]) == {"sr", "clust", "scl", "ckd", "adv", "loss"}
               for h in results["history"])
    on_disk = json.loads((folder / "results.json").read_text())
    assert on_disk["test"] == results["test"] and on_disk["command"].startswith("python examples/s4rec/train.py")
    assert {"git_commit", "machine", "config", "history", "flush_denormal"} <= set(on_disk)


def test_the_cli_flushes_denormals_and_records_it(finished):
    """Denormal floats (below 1.2e-38) slow CPU matmuls tens of times; the CLI flushes them."""
    folder, results = finished
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        pytest.skip("flush-to-zero is an x86 (SSE3) setting")
    assert json.loads((folder / "results.json").read_text())["flush_denormal"] is True
    # ... while it runs, and gives the mode back after: an in-process call (this test) must not
    # leave IEEE subnormals switched off (hypothesis, for one, then refuses to draw floats).
    assert torch.tensor([1e-39]).item() != 0.0
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0


def test_the_cli_keeps_freed_memory_and_records_it(finished):
    """On glibc the training command keeps freed memory (no page faults for a step's
    activations every step) and says so in results.json."""
    import ctypes.util
    import resource

    folder, _ = finished
    recorded = json.loads((folder / "results.json").read_text())["freed_memory_kept"]
    if sys.platform != "linux" or ctypes.util.find_library("c") is None:
        assert recorded is False
        return
    assert recorded is True
    # what it buys: a 48 MB block freed and allocated again does not fault its pages in again
    # (glibc's default maps it fresh with mmap every time: 11,719 faults per allocation)
    # (the fewest faults of three rounds: a shared machine reclaiming memory once is not the law)
    torch.ones(12_000_000).sum()
    rounds = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.ones(12_000_000).sum()
        rounds.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert min(rounds) < 11_719, rounds


@pytest.mark.parametrize("preset", ["iclrec", "sasrec"])
def test_resume_equals_the_uninterrupted_run_bit_for_bit(preset, tmp_path):
    # iclrec warm-starts each epoch's k-means from the last one's centroids: with one Lloyd
    # step per epoch a resume that lost them would start from random points and differ
    extra = ("--kmeans-iters", "1", "--kmeans-redo", "1") if preset == "iclrec" else ()
    whole = _train(tmp_path / "whole", *extra, preset=preset, epochs=3)
    part = _train(tmp_path / "part", *extra, preset=preset, epochs=3, stop_after_epochs=1)
    assert part["status"] == "interrupted"
    resumed = cli.train(["--resume", str(tmp_path / "part"), "--quiet"])
    assert resumed["test"] == whole["test"]
    assert [h["losses"] for h in resumed["history"]] == [h["losses"] for h in whole["history"]]
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    if preset == "iclrec":
        assert a.intent_centroids is not None and torch.equal(a.intent_centroids, b.intent_centroids)
    else:
        assert a.intent_centroids is None and b.intent_centroids is None


def test_eval_every_validates_every_n_epochs_and_counts_patience_in_epochs(tmp_path):
    results = _train(tmp_path / "run", "--eval-every", "2", "--patience", "2", preset="sasrec", epochs=5)
    validated = [h["epoch"] for h in results["history"] if "valid" in h]
    assert validated in ([1, 3], [1, 3, 4])  # every 2nd epoch, and the last one
    if validated == [1, 3]:  # no gain at epoch 3: 3 - 1 >= patience 2 epochs, stop
        assert results["stopped_early"] and results["best_epoch"] == 1 and results["epochs_run"] == 4
        assert results["stopped_by"] == "early_stopping"
    else:
        assert results["stopped_by"] == "max_epochs"
        # epoch 3 gained on epoch 1 (else patience had stopped the run there), so the best is 3 or 4
        assert results["best_epoch"] in (3, 4) and results["epochs_run"] == 5


def test_max_minutes_stops_after_the_epoch_that_exceeds_it_and_tests_the_best(tmp_path):
    results = _train(tmp_path / "run", "--max-minutes", "0", preset="sasrec", epochs=5)
    assert results["status"] == "finished" and results["stopped_by"] == "time_budget"
    assert results["epochs_run"] == 1 and not results["stopped_early"]
    assert "valid" in results["history"][0] and results["test"] is not None
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["stopped_by"] == "time_budget" and on_disk["status"] == "finished"
    roomy = _train(tmp_path / "roomy", "--max-minutes", "100", preset="sasrec", epochs=2)
    assert roomy["stopped_by"] == "max_epochs" and roomy["epochs_run"] == 2


def test_a_run_cut_by_its_time_budget_goes_on_with_resume_as_if_never_cut(tmp_path, capsys):
    """--max-minutes ends a run early; --resume trains on to the uninterrupted run's end, bit for bit."""
    whole = _train(tmp_path / "whole", preset="sasrec", epochs=3)
    cut = _train(tmp_path / "cut", "--max-minutes", "0", preset="sasrec", epochs=3)
    assert cut["status"] == "finished" and cut["stopped_by"] == "time_budget" and cut["epochs_run"] == 1
    no_time = cli.train(["--resume", str(tmp_path / "cut"), "--max-minutes", "0", "--quiet"])  # trains no epoch
    assert no_time["stopped_by"] == "time_budget" and no_time["epochs_run"] == 1
    resumed = cli.train(["--resume", str(tmp_path / "cut"), "--quiet"])
    assert resumed["stopped_by"] == "max_epochs" and resumed["epochs_run"] == 3
    assert resumed["test"] == whole["test"]
    for key in ("losses", "valid"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in whole["history"]]
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    record = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert "--max-minutes 0" in record["command"] and "--resume" not in record["command"]  # the first call
    assert [r["after_epochs"] for r in record["resumes"]] == [1, 1]  # every resume, and where it went on
    assert record["resumes"][0]["command"].endswith("--max-minutes 0 --quiet")
    assert record["resumed_with"] == record["resumes"][-1]["command"]
    with pytest.raises(SystemExit) as exit_info:  # now it ended at its epoch cap: nothing left to train
        cli.main(["--resume", str(tmp_path / "cut")])
    assert exit_info.value.code == 2 and "stopped by max epochs" in capsys.readouterr().err
    again = _train(tmp_path / "again", "--max-minutes", "0", preset="sasrec", epochs=3)
    (tmp_path / "again" / "last.pt").unlink()  # its state gone: never retrained from scratch over the result
    before = (tmp_path / "again" / "results.json").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--resume", str(tmp_path / "again")])
    assert exit_info.value.code == 2 and "last.pt is missing" in capsys.readouterr().err
    assert (tmp_path / "again" / "results.json").read_bytes() == before and again["epochs_run"] == 1


@pytest.mark.parametrize("preset", ["sasrec", "iclrec", "s4rec"])
def test_a_run_cut_by_its_clock_is_the_run_with_that_many_epochs(preset, tmp_path, monkeypatch):
    """A run that --max-minutes ends after epoch 2 (off the --eval-every 2 schedule) trains,
    validates and tests exactly as --epochs 3 does; report.py prints that flag for such runs."""
    from s4rec_example import loop, report

    trained = []
    train_epoch = loop.train_epoch

    def counted(*args, **kwargs):
        trained.append(1)
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", counted)
    monkeypatch.setattr(loop, "_clock", lambda: math.inf if len(trained) >= 3 else -math.inf)
    cut = _train(tmp_path / "cut", "--eval-every", "2", "--max-minutes", "60", preset=preset, epochs=8)
    assert cut["stopped_by"] == "time_budget" and cut["epochs_run"] == 3
    monkeypatch.setattr(loop, "_clock", lambda: -math.inf)
    plain = _train(tmp_path / "plain", "--eval-every", "2", preset=preset, epochs=3)
    assert plain["stopped_by"] == "max_epochs"
    assert [h["epoch"] for h in cut["history"] if "valid" in h] == [1, 2]
    for key in ("losses", "valid"):
        assert [h.get(key) for h in cut["history"]] == [h.get(key) for h in plain["history"]]
    assert cut["test"] == plain["test"] and cut["best_epoch"] == plain["best_epoch"]
    said = report._repeat(cut)
    assert "Without a clock, the same run: drop `--max-minutes 60` and add `--epochs 3`" in said
    assert report._repeat(plain) == ""
    unvalidated = json.loads(json.dumps(cut))
    del unvalidated["history"][-1]["valid"]  # an older run whose cut epoch was not validated
    assert "Without a clock" not in report._repeat(unvalidated)
    resumed = {**cut, "resumes": [{"after_epochs": 1}]}
    assert "Without a clock" not in report._repeat(resumed)


def test_a_killed_run_is_finished_by_resume_with_max_minutes_0(tmp_path):
    """A killed run (results.json still "running", best.pt there) is tested as it stands."""
    folder = tmp_path / "part"
    part = _train(folder, "--eval-every", "2", preset="sasrec", epochs=6, stop_after_epochs=3)
    assert part["status"] == "interrupted"
    on_disk = json.loads((folder / "results.json").read_text())
    assert on_disk["status"] == "running" and on_disk["stopped_by"] is None and on_disk["best_epoch"] == 1
    last_before = load_checkpoint(folder / "last.pt").model
    done = cli.train(["--resume", str(folder), "--max-minutes", "0", "--quiet"])
    assert done["status"] == "finished" and done["stopped_by"] == "time_budget"
    assert done["epochs_run"] == 3 and done["best_epoch"] == 1  # no epoch trained
    assert all(torch.equal(v, load_checkpoint(folder / "last.pt").model[k]) for k, v in last_before.items())
    model, checkpoint = load_model(folder / "best.pt")
    assert checkpoint.epoch == 1
    split = load_dataset(checkpoint.config).split(max_len=10)
    expected = _slow_metrics(model, split, "test")
    assert all(done["test"][k] == pytest.approx(v, abs=2e-6) for k, v in expected.items())
    assert json.loads((folder / "results.json").read_text())["status"] == "finished"


def test_finishing_a_run_killed_between_best_pt_and_last_pt_uses_the_newer_best(tmp_path):
    import shutil

    folder = tmp_path / "part"
    _train(folder, preset="sasrec", epochs=6, stop_after_epochs=2)
    for name in ("last.pt", "results.json"):
        shutil.copy(folder / name, tmp_path / f"{name}-after-epoch-1")
    cli.train(["--resume", str(folder), "--quiet"], stop_after_epochs=1)  # epoch 2: a new best
    epoch_2 = json.loads((folder / "results.json").read_text())["history"][2]
    assert load_checkpoint(folder / "best.pt").epoch == 2
    for name in ("last.pt", "results.json"):  # as if killed before last.pt's write (results.json comes after)
        shutil.copy(tmp_path / f"{name}-after-epoch-1", folder / name)
    done = cli.train(["--resume", str(folder), "--max-minutes", "0", "--quiet"])
    assert done["best_epoch"] == 2 and done["valid"] == epoch_2["valid"] and done["epochs_run"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs: must be >= 1"),
        (["--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "--device"),
        (["--device", "tpu"], "expected cpu, cuda or cuda:N"),
        (["--data", "/no/such/file.txt"], "no such file"),
        (["--data", "Beuaty"], "no such file (or pass one of Beauty, Sports, Toys, ML-1M); did you mean Beauty?"),
        (["--dropout", "1.5"], "must lie in [0, 1]"),
        (["--lr", "nan"], "must be finite"),
        (["--num-heads", "3"], "must divide"),
        (["--preset", "s4rec", "--view-pooling", "flatten"], "d-dimensional views"),
        (["--augment-operations", "crop,jump"], "choose among"),
        (["--preset", "nope"], "invalid choice"),
        (["--max-minutes", "-1"], "--max-minutes"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_no_folder(argv, message, tmp_path, capsys):
    folder = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--output", str(folder), *TINY, *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not folder.exists()


def test_a_failed_download_exits_2_with_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import socket

    import s4rec_components.data.public as public

    with socket.socket() as sock:  # a port nobody listens on: the download fails at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(public, "ICLREC_DATA_URL", f"http://127.0.0.1:{port}/")
    root, folder = tmp_path / "data", tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data", "Toys", "--data-root", str(root), "--output", str(folder), *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and "could not download" in errors[0] and "by hand" in errors[0]
    assert f"--data-root DIR names the folder that holds the file (looked in {root.resolve()})" in errors[0]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == errors[0]
    assert not root.exists() and not folder.exists()


def test_data_without_a_training_pair_exits_2(tmp_path, capsys):
    # every user has 3 items: leave-one-out keeps 2 for valid and test, so nothing is left to train on
    data, folder = tmp_path / "three.txt", tmp_path / "run"
    data.write_text("1 1 2 3\n2 2 3 4\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data", str(data), "--output", str(folder), *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "needs at least 4 items" in err[0]
    assert not folder.exists()


def test_a_named_dataset_that_fails_its_checksum_exits_2_and_trains_nothing(tmp_path, capsys):
    # a cut-short or edited Beauty.txt in --data-root must not be trained on under Beauty's name
    root, folder = tmp_path / "data", tmp_path / "run"
    root.mkdir()
    (root / "Beauty.txt").write_text("1 1 2 3\n2 2 3 1\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data", "Beauty", "--data-root", str(root), "--output", str(folder), *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error:") and "checksum mismatch" in err[0]
    assert not folder.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad", "not readable JSON"),
        ("[1]", "expected a JSON object"),
        ('{"lr": "fast"}', "lr must be float"),
        ('{"epochs": true}', "epochs must be int"),
        ('{"num_heads": 3}', "must divide"),
        ('{"lr": -0.001}', "--lr -0.001: must be > 0"),
        ('{"dropout": 1.5}', "--dropout 1.5: must lie in [0, 1]"),
        ('{"crop_ratio": 0}', "--crop-ratio 0: must lie in (0, 1)"),
        ('{"batch_size": 0}', "--batch-size 0: must be >= 1"),
        ('{"beta1": NaN}', "--beta1 nan: must be finite"),
        ('{"lr": null}', "lr must be float, got None"),
        ('{"hidden_size": null}', "hidden_size must be int, got None"),
        ('{"augment_operations": []}', "augment_operations must be a non-empty list"),
        ('{"preset": "nonsense"}', "preset must be one of"),
        ('{"colour": 1}', "unknown configuration keys"),
    ],
)
def test_resume_of_a_damaged_config_names_the_file(text, message, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--resume", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert message in err[0] and "config.json" in err[0]


def test_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--output", str(tmp_path / "r"), "--data", str(tmp_path / "missing.txt"), "--debug"])
    assert "Traceback" in capsys.readouterr().err


def test_a_finished_run_is_never_overwritten_without_overwrite(finished, capsys):
    folder, results = finished
    before = (folder / "results.json").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--preset", "s4rec", "--epochs", "3", "--output", str(folder), *TINY])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--resume", str(folder)])
    assert "finished" in capsys.readouterr().err
    assert (folder / "results.json").read_bytes() == before


def test_overwrite_replaces_a_run_and_resume_refuses_changed_settings(tmp_path, capsys):
    folder = tmp_path / "run"
    _train(folder, preset="sasrec", epochs=1)
    again = _train(folder, "--overwrite", "--seed", "1", preset="sasrec", epochs=1)
    assert again["config"]["seed"] == 1
    part = tmp_path / "part"
    _train(part, preset="sasrec", epochs=2, stop_after_epochs=1)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--resume", str(part), "--lr", "0.1"])
    assert exit_info.value.code == 2 and "--lr" in capsys.readouterr().err


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tmp_path, monkeypatch):
    folder = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(cli, "run_training", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        _train(folder, preset="sasrec", epochs=1)
    assert not folder.exists()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_malicious_last_pt_is_refused_not_executed(tmp_path, capsys):
    part = tmp_path / "part"
    _train(part, preset="sasrec", epochs=2, stop_after_epochs=1)
    marker = tmp_path / "pwned"
    torch.save({"format": FORMAT, "version": 1, "evil": _Payload(str(marker))}, part / "last.pt")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--resume", str(part)])
    assert exit_info.value.code == 2 and "last.pt: refused, it holds Python objects beyond tensors" in capsys.readouterr().err
    with open(part / "best.pt", "wb") as handle:  # a bare pickle, not torch.save's zip
        pickle.dump({"format": FORMAT, "model": _Payload(str(marker))}, handle)
    with pytest.raises(CheckpointError, match="refused, it is not a checkpoint written by torch.save"):
        load_checkpoint(part / "best.pt")
    assert not marker.exists()


def test_a_file_of_another_kind_is_named_as_such_not_as_a_dangerous_pickle(tmp_path):
    (tmp_path / "config.json").write_text('{"preset": "sasrec"}')
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="config.json: refused, it is not a checkpoint written by torch.save"):
        load_checkpoint(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="empty.pt: refused, damaged or not a torch file"):
        load_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("module", ["cli", "evaluate", "report", "headtail"])
def test_every_flag_has_help_and_a_shown_default(module):
    import importlib

    parser = importlib.import_module(f"s4rec_example.{module}").build_parser()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, action.dest
        text = parser.formatter_class("x")._get_help_string(action)
        assert "default" in text, action.dest


def test_config_json_round_trip():
    config = TrainConfig.from_preset("iclrec", augment_operations=("mask", "crop"))
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize("key, value", [
    ("view_pooling", "max"), ("z_pooling", "flatten"), ("padding_attention", "none"), ("loss", "mse"),
    ("cl_reduction", "sum"), ("augment_operations", ["crop", "shuffle"]), ("compute_path", 1),
])
def test_a_hand_edited_config_with_an_unknown_choice_is_refused(key, value):
    """``config.json`` is read back on --resume and by evaluate.py: a value outside the choices
    must fail there, naming the key and the allowed values, not deep inside the model."""
    values = json.loads(TrainConfig.from_preset("s4rec").to_json())
    values[key] = value
    with pytest.raises(ValueError, match=f"{key} must"):
        TrainConfig.from_dict(values)


def test_every_string_setting_has_its_choices_and_the_cli_offers_them():
    from s4rec_example.config import CHOICES

    defaults = TrainConfig()
    strings = {f for f in vars(defaults) if isinstance(getattr(defaults, f), str)}
    free = {"preset", "data_root", "device"}  # checked elsewhere (preset names) or free-form
    assert strings - free == set(CHOICES)
    for name, allowed in CHOICES.items():
        assert getattr(defaults, name) in allowed, name
    parser = cli.build_parser()
    offered = {a.dest: tuple(a.choices) for a in parser._actions if a.choices is not None}
    for name, allowed in CHOICES.items():
        assert offered[name] == tuple(allowed), name


@pytest.mark.parametrize("preset, batch, data, cap", [
    ("sasrec", None, "Beauty", 300), ("iclrec", None, "Beauty", 300), ("s4rec", None, "Beauty", 600),
    ("sr+csd", None, "Beauty", 600), ("s4rec", 256, "Beauty", 300), ("sasrec", 128, "Beauty", 300),
    ("sasrec", 1000, "Beauty", 1172), ("s4rec", None, None, 40), ("sasrec", None, None, 20),
])
def test_the_epoch_cap_gives_iclrecs_step_count_at_any_batch(preset, batch, data, cap):
    overrides = {} if batch is None else {"batch_size": batch}
    config = TrainConfig.from_preset(preset, data=data, **overrides)
    assert config.resolved_epochs == cap
    assert TrainConfig.from_preset(preset, data=data, epochs=7, **overrides).resolved_epochs == 7
    assert TrainConfig.from_preset("s4rec").batch_size == 512 and TrainConfig.from_preset("iclrec").batch_size == 256


@pytest.mark.slow
def test_killed_at_random_moments_every_resume_finishes(tmp_path):
    """SIGKILL at random moments once training runs (writes slowed so that kills land inside them);
    every resume must finish, with the uninterrupted run's numbers."""
    folder = tmp_path / "run"
    tiny = [a for a in TINY if a != "--quiet"] + ["--quiet", "--threads", "1"]
    argv = [sys.executable, str(TRAIN), "--preset", "sasrec", "--epochs", "4", *tiny]
    subprocess.run([*argv, "--output", str(tmp_path / "ref")], check=True, capture_output=True)
    reference = json.loads((tmp_path / "ref" / "results.json").read_text())
    env = {**os.environ, "S4REC_EXAMPLE_SLOW_WRITES": "0.2"}
    rng = random.Random(0)
    log = folder / "train.log"
    command = [*argv, "--output", str(folder)]
    kills = mid_write = 0
    for attempt in range(12):
        size = log.stat().st_size if log.exists() else 0
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kills < 4:
            deadline = time.monotonic() + 120
            after_epoch = attempt % 2 == 1  # odd attempts: just after an epoch line, when the writes run
            while process.poll() is None and time.monotonic() < deadline:
                new = log.read_text()[size:] if log.exists() else ""
                if (" epoch " in new) if after_epoch else bool(new):
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5 if after_epoch else 1.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
        process.wait(timeout=300)
        mid_write += any(p.name.endswith(".tmp") for p in folder.glob(".*"))
        for leftover in folder.glob(".*.tmp"):  # what a killed write leaves: never read, safe to drop
            leftover.unlink()
        if process.returncode == 0:
            break
        if (folder / "config.json").exists():
            command = [sys.executable, str(TRAIN), "--resume", str(folder), "--quiet", "--threads", "1"]
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "finished" and kills == 4 and mid_write >= 1
    assert results["test"] == reference["test"]
    assert [h["losses"] for h in results["history"]] == [h["losses"] for h in reference["history"]]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_end_a_run_in_one_line_that_resume_continues(tmp_path, sig, status):
    """Ctrl-C printed a traceback; SIGTERM exited silently and left a temp file behind."""
    folder = tmp_path / "run"
    tiny = [a for a in TINY if a != "--quiet"] + ["--quiet", "--threads", "1"]
    command = [sys.executable, str(TRAIN), "--preset", "sasrec", "--epochs", "30", *tiny, "--output", str(folder)]
    env = {**os.environ, "S4REC_EXAMPLE_SLOW_WRITES": "0.3"}  # the signal likely lands inside a write
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and not (folder / "results.json").exists():
        time.sleep(0.02)
    time.sleep(0.1)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert "Traceback" not in err and "interrupted; a run with a finished epoch goes on with --resume" in err
    assert not list(folder.glob(".*.tmp"))  # the interrupted write removed its temp file
    resumed = subprocess.run([sys.executable, str(TRAIN), "--resume", str(folder), "--quiet", "--threads", "1"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((folder / "results.json").read_text())["status"] == "finished"


def test_train_and_evaluate_share_flag_names():
    from s4rec_example import evaluate

    def flags(parser):
        return {s for a in parser._actions for s in a.option_strings}

    shared = {"--data", "--data-root", "--device", "--threads", "--quiet", "--debug", "--eval-batch-size", "--max-len"}
    assert shared <= flags(cli.build_parser()) & flags(evaluate.build_parser())


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_and_only_rank_0_writes(tmp_path):
    folder = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(TRAIN), "--preset", "s4rec",
         "--epochs", "2", "--output", str(folder), "--threads", "1", *TINY],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "finished" and results["command"].startswith("torchrun --nproc_per_node 2 ")
    log = (folder / "train.log").read_text()
    assert log.count(" epoch 0 |") == 1 and log.count(" epoch 1 |") == 1  # rank 0 alone logs and writes
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "config.json", "last.pt", "results.json",
                                                        "train.log"]
    state = load_checkpoint(folder / "last.pt")
    assert state.state["world_size"] == 2 and {"torch.r1", "generator.r1", "order"} <= set(state.rng)


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "headtail.py", "compare.py"])
def test_entry_points_ask_for_passive_openmp_waits_before_torch_is_imported(script):
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: the entry point must set it first."""
    source = (ROOT / "examples" / "s4rec" / script).read_text()
    setting = source.index('os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")')
    assert setting < source.index("from s4rec_example")
    assert "import torch" not in source[:setting]


@pytest.mark.parametrize("bad", [torch.tensor([[float("nan"), 0.0]]), torch.zeros(3), torch.zeros(2, 2, dtype=torch.long)])
def test_a_checkpoint_with_bad_intent_centroids_is_refused(finished, tmp_path, bad):
    """The warm-start centroids a resume continues from are checked like the rest of the file."""
    folder, _ = finished
    payload = torch.load(folder / "last.pt", weights_only=True)
    payload["intent_centroids"] = bad
    path = tmp_path / "last.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="intent_centroids"):
        load_checkpoint(path)


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_amp_runs_the_training_forward_in_bfloat16_and_evaluation_in_float32(amp, tmp_path, monkeypatch):
    """--amp bf16: every linear layer computes in bfloat16 while training, float32 in evaluation
    (validation, test, k-means); --amp off: float32 throughout. Recorded in the results."""
    from s4rec_example import loop

    seen: dict[bool, set[torch.dtype]] = {True: set(), False: set()}

    def hooked(*args, **kwargs):
        model = build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda m, _i, out: seen[m.training].add(out.dtype))
        return model

    build = loop.build_model
    monkeypatch.setattr(loop, "build_model", hooked)
    results = cli.train(["--preset", "iclrec", "--epochs", "2", "--num-intents", "4", "--amp", amp,
                         "--output", str(tmp_path / "run"), *TINY])
    assert results["config"]["amp"] == amp
    assert seen[True] == ({torch.bfloat16} if amp == "bf16" else {torch.float32})
    assert seen[False] == {torch.float32}
    assert all(math.isfinite(v) for v in results["test"].values())


def test_fused_adam_is_asked_for_only_where_torch_has_it(monkeypatch):
    from s4rec_example import loop

    model = torch.nn.Linear(3, 2)
    config = TrainConfig(preset="sasrec")
    assert loop.make_optimizer(model, config, torch.device("cpu")).param_groups[0]["fused"] is True
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.3.1"))
    assert loop.fused_adam_devices() == {"cuda"}  # fused CPU Adam arrived in torch 2.4
    assert loop.make_optimizer(model, config, torch.device("cpu")).param_groups[0]["fused"] is None
