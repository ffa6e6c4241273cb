"""The example's commands against edited, forged and misplaced files (a review of 2026-12-05).

Each case once trained on other settings than it recorded, wrote or deleted outside the run's
own files, copied a bad file into the results before refusing it, or ended in a traceback. The
laws: a resumed run is the run that started; a command touches only its own files; every bad
file is one line on stderr (exit status 2) that names it.
"""

from __future__ import annotations

import html
import json
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "s4rec"))

from s4rec_example import cli, evaluate, headtail, report  # noqa: E402
from s4rec_example.checkpoint import load_checkpoint  # noqa: E402

TINY = ["--synthetic-users", "60", "--synthetic-items", "30", "--max-len", "10", "--hidden-size", "16",
        "--batch-size", "32", "--num-prototypes", "8", "--eval-batch-size", "64", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(folder: Path, *extra: str, epochs: int = 2, **kwargs):
    return cli.train(["--preset", "sasrec", "--epochs", str(epochs), "--output", str(folder), *TINY, *extra], **kwargs)


def _one_line_error(call, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        call()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if ": error: " in line]  # log lines aside
    assert exit_info.value.code == 2 and len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    """An unfinished run (1 of 3 epochs), to be copied and tampered with."""
    folder = tmp_path_factory.mktemp("partial") / "run"
    _train(folder, epochs=3, stop_after_epochs=1)
    return folder


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(folder, to)
    return to


@pytest.mark.parametrize("make, expected", [
    (lambda p: None, "no such folder"),
    (lambda p: p.write_text("{}"), "not a folder"),
    (lambda p: p.mkdir(), "no run there (config.json missing)"),
])
def test_resume_of_something_that_is_not_a_run_says_what_it_found(tmp_path, capsys, make, expected):
    target = tmp_path / "run"
    make(target)
    assert f"--resume {target}: {expected}" in _one_line_error(lambda: cli.main(["--resume", str(target)]), capsys)


@pytest.mark.parametrize("key, value", [("seed", 7), ("synthetic_users", 61), ("loss", "ce"), ("lr", 0.5)])
def test_resume_refuses_a_config_edited_after_the_run_started(partial, tmp_path, capsys, key, value):
    run = _copy(partial, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config[key] = value
    (run / "config.json").write_text(json.dumps(config))
    before = (run / "last.pt").read_bytes()
    message = _one_line_error(lambda: cli.main(["--resume", str(run)]), capsys)
    assert f"{key} = {value!r} differs" in message and "last.pt" in message
    assert (run / "last.pt").read_bytes() == before  # nothing trained


def test_resume_refuses_a_linked_log(partial, tmp_path, capsys):
    run = _copy(partial, tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (run / "train.log").unlink()
    (run / "train.log").symlink_to(victim)
    message = _one_line_error(lambda: cli.main(["--resume", str(run)]), capsys)
    assert "train.log" in message and "not a regular file" in message
    assert victim.read_text() == "mine\n"


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_refuses_a_visible_entry_that_is_not_a_runs_file(tmp_path, capsys, overwrite):
    folder = tmp_path / "out"
    (folder / "best.pt").mkdir(parents=True)  # a folder with a run file's name
    (folder / "best.pt" / "important.txt").write_text("mine")
    (folder / "notes.txt").write_text("mine")
    argv = ["--preset", "sasrec", "--epochs", "1", "--output", str(folder), *TINY] + (["--overwrite"] if overwrite else [])
    message = _one_line_error(lambda: cli.main(argv), capsys)
    assert "holds files of no run (best.pt, notes.txt)" in message
    assert (folder / "best.pt" / "important.txt").exists() and (folder / "notes.txt").exists()


def test_hidden_entries_of_others_are_never_deleted(tmp_path):
    """``--overwrite`` (and the folder of a run killed before its config) delete the run's own
    files one by one: a ``.git`` or ``.ssh`` beside them stays, and the run goes ahead."""
    folder = tmp_path / "out"
    _train(folder, epochs=1)
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("s")
    (folder / ".mynotes").write_text("n")
    again = _train(folder, "--overwrite", "--seed", "1", epochs=1)
    assert again["config"]["seed"] == 1
    assert (folder / ".git" / "config").read_text() == "s" and (folder / ".mynotes").read_text() == "n"
    killed = tmp_path / "killed"
    (killed / ".ssh").mkdir(parents=True)
    (killed / ".ssh" / "id").write_text("k")
    (killed / "train.log").write_text("x")  # a run killed before it wrote its config
    _train(killed, epochs=1)
    assert (killed / ".ssh" / "id").read_text() == "k" and (killed / "results.json").is_file()


def test_overwrite_deletes_only_the_runs_files(tmp_path):
    folder = tmp_path / "run"
    _train(folder, epochs=1)
    (folder / ".results.json.abc.tmp").write_text("half")  # a killed atomic write
    again = _train(folder, "--overwrite", "--seed", "1", epochs=1)
    assert again["config"]["seed"] == 1
    assert not (folder / ".results.json.abc.tmp").exists()


@pytest.mark.parametrize("make", ["link", "under-a-file"])
def test_an_output_that_is_a_link_or_under_a_file_is_refused(tmp_path, capsys, make):
    if make == "link":
        (tmp_path / "real").mkdir()
        target = tmp_path / "link"
        target.symlink_to(tmp_path / "real")
    else:
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "sub"
    argv = ["--preset", "sasrec", "--epochs", "1", "--output", str(target), "--overwrite", *TINY]
    message = _one_line_error(lambda: cli.main(argv), capsys)
    assert str(target) in message


def test_resume_from_a_forged_state_is_one_line(partial, tmp_path, capsys):
    run = _copy(partial, tmp_path / "run")
    payload = torch.load(run / "last.pt", weights_only=True)
    payload["rng"] = {}
    torch.save(payload, run / "last.pt")
    message = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "last.pt" in message and "cannot resume" in message


def test_evaluate_refuses_weights_that_do_not_fit_and_pickles(partial, tmp_path, capsys):
    payload = torch.load(partial / "best.pt", weights_only=True)
    payload["model"]["encoder.position_embeddings.weight"] = torch.zeros(3, 16)
    torch.save(payload, tmp_path / "shape.pt")
    message = _one_line_error(lambda: evaluate.main(["--checkpoint", str(tmp_path / "shape.pt")]), capsys)
    assert "shape.pt" in message and "do not fit" in message

    payload = torch.load(partial / "best.pt", weights_only=True)
    payload["num_items"] = 10**7  # the table is not that big: refused before anything is built
    torch.save(payload, tmp_path / "count.pt")
    message = _one_line_error(lambda: evaluate.main(["--checkpoint", str(tmp_path / "count.pt")]), capsys)
    assert "item table" in message

    class Boom:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Boom()))
    data = tmp_path / "data.txt"
    data.write_text("1 1 2 3\n")
    for flag in ("--checkpoint", "--iclrec-checkpoint"):
        argv = [flag, str(tmp_path / "evil.pt")] + (["--data", str(data)] if flag == "--iclrec-checkpoint" else [])
        message = _one_line_error(lambda: evaluate.main(argv), capsys)
        assert "evil.pt: refused" in message and "weights_only" not in message


def _forged(source: Path, target: Path, edit) -> Path:
    payload = torch.load(source, weights_only=True)
    edit(payload)
    torch.save(payload, target)
    return target


def _with_config(**changes):
    def edit(payload):
        config = json.loads(payload["config"])
        config.update(changes)
        payload["config"] = json.dumps(config)
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(num_items=float("inf")), "num_items must be an int"),
    (lambda p: p.update(epoch="3"), "epoch must be an int"),
    (lambda p: p.update(item_ids="[" * 200_000), "RecursionError"),
    (lambda p: p.update(item_ids=json.dumps([1, 2])), "item_ids must be a list of strings"),
    (lambda p: p.update(model=[1]), "model must map parameter names to tensors"),
    (_with_config(hidden_size=2**40), "its settings"),  # overflows even on the meta device, or does not fit
    (_with_config(hidden_size=128, num_heads=2), "do not fit the model of its settings"),
    (_with_config(num_layers=10**6), "layers, more than its"),
    (_with_config(num_heads=3), "settings"),  # 3 does not divide d: no model at all
])
def test_evaluate_refuses_forged_checkpoint_fields_in_one_line(partial, tmp_path, capsys, edit, message):
    forged = _forged(partial / "best.pt", tmp_path / "forged.pt", edit)
    line = _one_line_error(lambda: evaluate.main(["--checkpoint", str(forged)]), capsys)
    assert "forged.pt" in line and message in line


def test_resume_refuses_forged_sizes_before_building_anything(partial, tmp_path, capsys):
    run = _copy(partial, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["hidden_size"] = 2**40  # both files forged alike, so that the settings agree
    (run / "config.json").write_text(json.dumps(config))
    _forged(run / "last.pt", run / "last.pt", _with_config(hidden_size=2**40))
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "last.pt" in line and "its settings" in line


def test_headtail_refuses_an_output_file_before_studying(tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    message = _one_line_error(lambda: headtail.main(["--runs", str(tmp_path), "--output", str(tmp_path / "out")]),
                              capsys)
    assert "not a folder" in message


# ------------------------------------------------------------------ report.py
@pytest.fixture(scope="module")
def finished_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("done") / "run"
    _train(folder, epochs=1)
    return json.loads((folder / "results.json").read_text())


def _report(tmp_path: Path, *extra: str) -> list[str]:
    page = tmp_path / "page.md"
    if not page.exists():
        page.write_text(f"# R\n\n{report.BEGIN}\n{report.END}\n")
    return ["--results-dir", str(tmp_path / "results"), "--page", str(page), "--img-dir", str(tmp_path / "img"),
            "--paper", "none", "--no-figures", "--quiet", *extra]


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(test="abc"), "test must map metric names to finite numbers"),
    (lambda r: r["test"].update({"NDCG@20": float("nan")}), "finite numbers"),
    (lambda r: r.pop("config"), "config must be a JSON object"),
    (lambda r: r["config"].update(loss="x/../../../outside/ESCAPED"), "loss must be one of"),
    (lambda r: r["config"].update(preset="nope"), "preset must be one of"),
    (lambda r: r.update(history=[{"epoch": "1"}]), "history must be a list of epochs"),
    # a fourth review (2026-12-06): each of these was copied in, then broke every later report
    (lambda r: r["test"].update({"NDCG@20": 10**400}), "finite numbers"),  # was an OverflowError
    (lambda r: r.update(stopped_by="meteor"), "stopped_by must be one of early_stopping"),
    (lambda r: r.update(epoch_cap=float("inf")), "epoch_cap must be an int >= 1"),
    (lambda r: r.update(epoch_cap="abc"), "epoch_cap must be an int >= 1"),
    (lambda r: r["history"][0].update(valid={"HR@20": 0.1}), "the valid metrics of epoch 0 lack one of"),
    (lambda r: r["config"].update(alpha=10**400), "--alpha"),  # was a file name too long to write
    (lambda r: r.update(command="x\n<!-- results:end -->"), "without backticks or HTML comments"),
    (lambda r: r.update(git_commit="`rm`"), "without backticks or HTML comments"),
    (lambda r: r.update(note=["a list"]), "note must be a string"),
    (lambda r: r.update(resumes=[{"after_epochs": "3"}]), "resumes must be a list of objects"),
    (lambda r: r.update(resumes=[{"after_epochs": 3, "git_commit": "a`b"}]), "without backticks"),
])
def test_report_add_checks_a_results_file_before_copying_it(finished_results, tmp_path, capsys, edit, message):
    bad = json.loads(json.dumps(finished_results))
    edit(bad)
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(bad))
    line = _one_line_error(lambda: report.main(_report(tmp_path, "--add", str(source))), capsys)
    assert "bad.json" in line and message in line
    assert not list((tmp_path / "results").glob("*.json")) if (tmp_path / "results").exists() else True
    assert not (tmp_path / "outside").exists()


def test_report_names_a_bad_file_already_in_the_results(finished_results, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "broken.json").write_text('{"status": "finished", "test": {')
    line = _one_line_error(lambda: report.main(_report(tmp_path)), capsys)
    assert "broken.json" in line
    (results / "broken.json").write_text("[1, 2]")
    line = _one_line_error(lambda: report.main(_report(tmp_path)), capsys)
    assert "broken.json" in line and "expected a JSON object" in line


def test_report_warns_when_the_papers_numbers_are_missing(finished_results, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    argv = _report(tmp_path)
    report.main(argv)  # --paper none: left out on purpose, no warning
    assert "warning" not in capsys.readouterr().err
    missing = tmp_path / "no-such-paper.json"
    argv[argv.index("none")] = str(missing)
    report.main(argv)  # even under --quiet
    err = capsys.readouterr().err
    assert "warning" in err and str(missing) in err and "without the paper's numbers" in err


def test_results_names_cannot_leave_their_folder(finished_results):
    sneaky = json.loads(json.dumps(finished_results))
    sneaky["config"]["data"] = None
    assert "/" not in report.results_name(sneaky)
    sneaky["config"]["seed"] = "0/../../x"
    with pytest.raises(ValueError, match="would hold a path"):
        report.results_name(sneaky)


@pytest.mark.parametrize("edit, message", [
    ("swap", "same statistics, other content: data_content_sha256"),  # two items of one user swapped
    ("drop", "the data changed since the run started (avg_length:"),  # one interaction less
])
def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path, capsys, edit, message):
    from s4rec_components import generate_synthetic

    data = tmp_path / "data.txt"
    generate_synthetic(num_users=60, num_items=30, seed=3, min_length=6, max_length=12).save(data)
    run = tmp_path / "run"
    _train(run, "--data", str(data), epochs=3, stop_after_epochs=1)
    assert json.loads((run / "results.json").read_text())["data_content_sha256"]
    lines = data.read_text().splitlines()
    user, *items = lines[0].split()
    row = next(i for i in range(len(items) - 1) if items[i] != items[i + 1])
    if edit == "swap":
        items[row], items[row + 1] = items[row + 1], items[row]
    else:
        del items[row]
    data.write_text("\n".join([" ".join([user, *items]), *lines[1:]]) + "\n")
    before = (run / "last.pt").read_bytes()
    error = _one_line_error(lambda: cli.main(["--resume", str(run)]), capsys)
    assert message in error and str(run) in error
    assert (run / "last.pt").read_bytes() == before  # nothing trained


def test_the_data_fingerprint_is_the_documented_layout_on_every_platform():
    """``data_content_sha256``: SHA-256 of a header with num_items, then the user ids, offsets and
    items as little-endian int64, written out here with struct (no torch, no numpy)."""
    import hashlib
    import struct

    from s4rec_components import SequenceDataset
    from s4rec_example.data import data_fingerprint

    reference = hashlib.sha256(b"s4rec-data-v1 5\n")
    for values in ([1, 2], [0, 3, 7], [1, 2, 3, 2, 3, 4, 5]):
        reference.update(b"".join(struct.pack("<q", v) for v in values))
    dataset = SequenceDataset.from_sequences([[1, 2, 3], [2, 3, 4, 5]])
    assert data_fingerprint(dataset) == reference.hexdigest()
    assert data_fingerprint(SequenceDataset.from_sequences([[1, 3, 2], [2, 3, 4, 5]])) != reference.hexdigest()


def test_a_converted_ml1m_goes_through_download_dataset_and_other_local_files_are_read_as_they_are(tmp_path):
    """An ml-1m.txt with this library's record may be an older conversion (no 5-core filter):
    the example must let download_dataset check it (and convert it again) instead of reading it."""
    from s4rec_example.data import resolve_data_path

    (tmp_path / "ml-1m.txt").write_text("1 1 2 3\n")
    assert resolve_data_path("ML-1M", tmp_path) == tmp_path / "ml-1m.txt"  # placed by hand: used as is
    (tmp_path / "ml-1m.txt.sha256").write_text("0" * 64 + "  ml-1m.txt\n")
    assert resolve_data_path("ML-1M", tmp_path) is None  # converted here: download_dataset decides
    (tmp_path / "Beauty.txt").write_text("1 1 2 3\n")
    assert resolve_data_path("Beauty", tmp_path) is None  # there, but download_dataset checks it
    assert resolve_data_path("Toys", tmp_path) is None  # not there: downloaded
    assert resolve_data_path(str(tmp_path / "Beauty.txt"), "elsewhere") == tmp_path / "Beauty.txt"


@pytest.mark.parametrize(
    ("given", "guess"),
    [
        ("{folder}/Beuty.txt", "did you mean {folder}/Beauty.txt?"),  # a typo in a path: the close file
        ("{folder}/sports.txt", "did you mean {folder}/Sports_and_Outdoors.txt?"),
        ("{folder}/nothing_alike.csv", None),  # nothing close in the folder, nor a dataset name
        ("{folder}/missing/Toys.txt", "did you mean Toys?"),  # no such folder: the dataset name
        ("Beuaty", "did you mean Beauty?"),  # a bare word: a dataset name
    ],
)
def test_a_missing_data_path_suggests_a_close_file_beside_it_before_a_dataset_name(tmp_path, given, guess):
    from s4rec_example.data import resolve_data_path

    for name in ("Beauty.txt", "Sports_and_Outdoors.txt"):
        (tmp_path / name).write_text("1 1 2 3\n")
    with pytest.raises(FileNotFoundError) as caught:
        resolve_data_path(given.format(folder=tmp_path), tmp_path / "root")
    message = str(caught.value)
    assert "no such file (or pass one of Beauty, Sports, Toys, ML-1M)" in message
    if guess is None:
        assert "did you mean" not in message
    else:
        assert message.endswith("; " + guess.format(folder=tmp_path))


# ---------------------------------------------------------------------------- a review of 2026-12-06
# A crafted optimizer state crashed the fused Adam kernel (a segmentation fault) or silently set
# another learning rate; a resume state of the wrong types, a best.pt of another run, changed
# data with results.json gone, NaN weights, deeply nested JSON and a generated size of billions
# each ended in a traceback, an allocation, or a run that was not the one that started.
def _forge_last(partial: Path, tmp_path: Path, edit) -> Path:
    run = _copy(partial, tmp_path / "run")
    _forged(run / "last.pt", run / "last.pt", edit)
    return run


def _first_moment(payload) -> dict:
    return next(iter(payload["optimizer"]["state"].values()))


@pytest.mark.parametrize("edit, message", [
    (lambda p: _first_moment(p).update(exp_avg=torch.zeros(1)), "exp_avg of encoder.item_embeddings.weight"),
    # the right shape on a one-element storage: the fused kernel would write past it
    (lambda p: _first_moment(p).update(exp_avg=torch.zeros(1).expand_as(_first_moment(p)["exp_avg"])), "contiguous"),
    (lambda p: _first_moment(p).update(exp_avg_sq=-_first_moment(p)["exp_avg_sq"] - 1), "values Adam cannot have"),
    (lambda p: _first_moment(p).update(step=torch.tensor([1.0, 2.0])), "must be a finite float scalar"),
    (lambda p: _first_moment(p).update(step=torch.tensor(3)), "must be a finite float scalar"),
    (lambda p: _first_moment(p).pop("exp_avg"), "is not Adam's"),
    (lambda p: p["optimizer"]["state"].update({10**6: {}}), "names parameter"),
    (lambda p: p["optimizer"].pop("state"), "a 'state' mapping"),
])
def test_resume_refuses_an_optimizer_state_that_does_not_fit_the_model(partial, tmp_path, capsys, edit, message):
    run = _forge_last(partial, tmp_path, edit)
    before = (run / "last.pt").read_bytes()
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "last.pt" in line and "cannot resume" in line and message in line
    assert (run / "last.pt").read_bytes() == before


def test_resume_keeps_the_configs_optimizer_settings_whatever_the_file_says(partial, tmp_path):
    def forge(payload):
        for group in payload["optimizer"]["param_groups"]:
            group.update(lr=123.0, weight_decay=5.0)

    plain = cli.train(["--resume", str(_copy(partial, tmp_path / "plain")), "--quiet"])
    forged = cli.train(["--resume", str(_forge_last(partial, tmp_path / "f", forge)), "--quiet"])
    assert forged["status"] == plain["status"] == "finished"
    assert forged["test"] == plain["test"] and forged["valid"] == plain["valid"]


def _with_state(**changes):
    def edit(payload):
        payload["state"] = json.dumps({**json.loads(payload["state"]), **changes})
    return edit


def _history_edit(change):
    def edit(payload):
        state = json.loads(payload["state"])
        change(state["history"][0])
        if "valid" in state["history"][0]:
            state["best_valid"] = state["history"][0]["valid"]
        payload["state"] = json.dumps(state)
    return edit


def _infinite_best(payload):
    state = json.loads(payload["state"])
    state["history"][0]["valid"]["NDCG@20"] = state["best_score"] = float("inf")
    state["best_valid"] = state["history"][0]["valid"]
    payload["state"] = json.dumps(state)


@pytest.mark.parametrize("edit", [
    _with_state(epoch="1"), _with_state(epoch=1e999), _with_state(epoch=-7), _with_state(history="abc"),
    _with_state(best_score="x"), _with_state(best_valid={"HR@20": 0.5}), _with_state(best_epoch=5),
    _with_state(stopped_by="boredom"), _with_state(world_size=0), _with_state(extra=1),
    _with_state(data_content_sha256=7), lambda p: p.update(state="[1]"),
    _with_state(best_score=1), _history_edit(lambda r: r.pop("train_seconds")),
    _history_edit(lambda r: r.update(train_seconds="1")), _history_edit(lambda r: r.update(losses=[1])),
    _history_edit(lambda r: r.update(eval_seconds=float("nan"))), _history_edit(lambda r: r.update(other=1)),
    _history_edit(lambda r: r["valid"].pop("HR@5")), _history_edit(lambda r: r["valid"].update({"HR@5": "x"})),
    _infinite_best,
])
def test_resume_refuses_a_run_state_of_other_types_or_inconsistent(partial, tmp_path, capsys, edit):
    run = _forge_last(partial, tmp_path, edit)
    before = (run / "last.pt").read_bytes()
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "last.pt" in line and "cannot resume" in line
    assert (run / "last.pt").read_bytes() == before  # refused before any epoch


def test_the_run_state_reads_back_what_it_wrote(partial):
    from s4rec_example.loop import RunState

    state = json.loads(torch.load(partial / "last.pt", weights_only=True)["state"])
    assert RunState.from_dict(state).to_dict() == state
    assert RunState.from_dict(RunState().to_dict()) == RunState()


@pytest.mark.parametrize("swap", ["other seed", "later epoch"])
def test_a_best_model_of_another_run_is_never_tested(partial, tmp_path, capsys, swap):
    run = _copy(partial, tmp_path / "run")
    if swap == "other seed":
        other = tmp_path / "other"
        _train(other, "--seed", "5", epochs=3, stop_after_epochs=1)
        (run / "best.pt").write_bytes((other / "best.pt").read_bytes())
        expected = "not this run's best model (seed"
    else:
        _forged(run / "best.pt", run / "best.pt", lambda p: p.update(epoch=2))
        expected = "not this run's best model (epoch 2"
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet", "--max-minutes", "0"]), capsys)
    assert "best.pt" in line and expected in line
    assert json.loads((run / "results.json").read_text())["status"] != "finished"


def test_resume_refuses_changed_data_even_without_results_json(tmp_path, capsys):
    from s4rec_components import generate_synthetic

    data = tmp_path / "data.txt"
    generate_synthetic(num_users=60, num_items=30, seed=3, min_length=6, max_length=12).save(data)
    run = tmp_path / "run"
    _train(run, "--data", str(data), epochs=3, stop_after_epochs=1)
    (run / "results.json").unlink()  # a kill between last.pt and results.json, or a hand
    user, *items = data.read_text().splitlines()[0].split()
    lines = data.read_text().splitlines()
    data.write_text("\n".join([" ".join([user, *reversed(items)]), *lines[1:]]) + "\n")
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "last.pt" in line and "trained on other data" in line


def _poison(payload):
    payload["model"]["encoder.item_embeddings.weight"][1, 0] = float("nan")


def _retype(make):
    def edit(payload):
        weights = payload["model"]
        weights["encoder.item_embeddings.weight"] = make(weights["encoder.item_embeddings.weight"])
    return edit


@pytest.mark.parametrize("edit, message", [
    (_poison, "NaN or infinite"),
    (_retype(lambda w: torch.empty(w.shape, device="meta")), "dense real tensor with values"),
    (_retype(lambda w: torch.complex(w, torch.full_like(w, float("nan")))), "dense real tensor"),
    (_retype(lambda w: w.to(torch.float8_e4m3fn)), "dense real tensor"),
])
def test_weights_that_are_not_plain_finite_tensors_are_refused_by_every_reader(partial, tmp_path, capsys, edit, message):
    run = _forge_last(partial, tmp_path, edit)
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "last.pt" in line and message in line
    best = _forged(partial / "best.pt", tmp_path / "odd.pt", edit)
    line = _one_line_error(lambda: evaluate.main(["--checkpoint", str(best)]), capsys)
    assert "odd.pt" in line and message in line


@pytest.mark.parametrize("name", ["config.json", "results.json"])
def test_deeply_nested_run_files_are_one_line(partial, tmp_path, capsys, name):
    run = _copy(partial, tmp_path / "run")
    (run / name).write_text("[" * 100_000)
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert name in line and "RecursionError" in line
    if name == "results.json":  # the same folder as --output: refused as an unfinished run
        line = _one_line_error(lambda: _train(run), capsys)
        assert "unfinished run" in line


def test_report_names_deeply_nested_and_misshapen_files(finished_results, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "deep.json").write_text("[" * 100_000)
    line = _one_line_error(lambda: report.main(_report(tmp_path)), capsys)
    assert "deep.json" in line and "RecursionError" in line
    (tmp_path / "results" / "deep.json").unlink()
    (tmp_path / "results" / "run.json").write_text(json.dumps(finished_results))
    argv = _report(tmp_path)
    paper = tmp_path / "paper.json"
    argv[argv.index("none")] = str(paper)
    for text, expected in [('{"table2": ', "paper.json: not readable JSON"), ('{"table2": [1]}', "--paper: not shaped")]:
        paper.write_text(text)
        line = _one_line_error(lambda: report.main(argv), capsys)
        assert expected in line


def test_a_checkpoint_cannot_ask_evaluate_for_billions_of_generated_users(partial, tmp_path, capsys):
    forged = _forged(partial / "best.pt", tmp_path / "big.pt", _with_config(synthetic_users=3_000_000_000))
    line = _one_line_error(lambda: evaluate.main(["--checkpoint", str(forged)]), capsys)
    assert "big.pt" in line and "synthetic_users must be <=" in line
    line = _one_line_error(lambda: _train(tmp_path / "flag", "--synthetic-users", "3000000000"), capsys)
    assert "--synthetic-users" in line


def test_resume_removes_the_temp_files_that_killed_writes_left(partial, tmp_path):
    run = _copy(partial, tmp_path / "run")
    left = [run / ".results.json.abc123.tmp", run / ".last.pt.xyz.tmp"]
    for path in left:
        path.write_bytes(b"half")
    (run / ".keep").write_text("not the run's")
    cli.train(["--resume", str(run), "--quiet"])
    assert not any(path.exists() for path in left) and (run / ".keep").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks need fcntl")
def test_two_processes_never_train_in_one_folder(partial, tmp_path, capsys):
    import fcntl

    run = _copy(partial, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with open(run / "train.log", "a") as held:  # another process training there holds this lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        for call in (lambda: cli.main(["--resume", str(run), "--quiet"]),
                     lambda: _train(run, "--overwrite", epochs=3)):
            line = _one_line_error(call, capsys)
            assert "another process is training in this folder" in line
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing deleted or written
    assert cli.train(["--resume", str(run), "--quiet"])["status"] == "finished"  # released: goes on


# ---------------------------------------------------------------- a fourth review (2026-12-06, late)
# Each case below ended in a traceback after training, went on as another run, wrote outside the
# run folder, hung, or broke the docs page for good.


@pytest.mark.parametrize("make", ["missing", "folder"])
def test_resume_refuses_a_best_model_that_is_gone(partial, tmp_path, capsys, make):
    run = _copy(partial, tmp_path / "run")
    (run / "best.pt").unlink()
    if make == "folder":
        (run / "best.pt").mkdir()
    before = (run / "last.pt").read_bytes()
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "best.pt" in line and ("not a regular file" in line)
    assert (run / "last.pt").read_bytes() == before  # refused before any epoch, not after the last


@pytest.mark.parametrize("name", ["results.json", "last.pt", "config.json"])
def test_resume_refuses_run_files_that_are_folders(partial, tmp_path, capsys, name):
    run = _copy(partial, tmp_path / "run")
    (run / name).unlink()
    (run / name).mkdir()
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert name in line and "not a regular file" in line


@pytest.mark.skipif(sys.platform == "win32", reason="no named pipes")
def test_resume_and_report_refuse_pipes_instead_of_waiting_on_them(partial, finished_results, tmp_path, capsys):
    import os

    run = _copy(partial, tmp_path / "run")
    (run / "results.json").unlink()
    os.mkfifo(run / "results.json")
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert "results.json" in line and "not a regular file" in line
    for pipe in ("results/zz.json", "results/headtail-x/headtail.json"):
        (tmp_path / pipe).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(tmp_path / pipe)
        line = _one_line_error(lambda: report.main(_report(tmp_path)), capsys)
        assert "not a regular file" in line and pipe.split("/")[-1] in line
        (tmp_path / pipe).unlink()


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["config"].update(lr=0.01), "belongs to another run (lr = 0.01"),
    (lambda r: r.update(epochs_run=10**400), "does not fit last.pt's 1 epochs"),
    (lambda r: r.update(epochs_run=3), "does not fit last.pt's 1 epochs"),
])
def test_resume_refuses_a_results_file_of_another_run(partial, tmp_path, capsys, edit, message):
    """results.json lends the resumed run its command and commit: another run's was merged in."""
    run = _copy(partial, tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    edit(results)
    (run / "results.json").write_text(json.dumps(results))
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert message in line


def test_a_kill_between_last_pt_and_results_json_still_resumes(partial, tmp_path):
    run = _copy(partial, tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    results.update(epochs_run=0, history=[])  # the file one epoch behind last.pt
    (run / "results.json").write_text(json.dumps(results))
    final = cli.train(["--resume", str(run), "--quiet"])
    assert final["status"] == "finished" and final["resumes"][0]["after_epochs"] == 1  # last.pt's count


def test_resume_looks_up_named_data_under_this_calls_data_root(partial, tmp_path, capsys):
    """A run folder's config.json cannot choose where a dataset is read or downloaded."""
    from s4rec_components import generate_synthetic

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    for root in (here, elsewhere):  # not the public file: refused by its checksum, without a download
        root.mkdir()
        generate_synthetic(num_users=40, num_items=30, seed=1).save(root / "Beauty.txt")
    run = tmp_path / "run"
    run.mkdir()
    config = json.loads((partial / "config.json").read_text())
    config.update(data="Beauty", data_root=str(elsewhere))
    (run / "config.json").write_text(json.dumps(config))  # a run killed before its first epoch ended
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--data-root", str(here), "--quiet"]), capsys)
    assert f"checksum mismatch for {here / 'Beauty.txt'}" in line and str(elsewhere) not in line


@pytest.fixture(scope="module")
def partial_iclrec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("partial-iclrec") / "run"
    _train(folder, "--preset", "iclrec", "--num-intents", "4", "--kmeans-redo", "1", epochs=3, stop_after_epochs=1)
    return folder


@pytest.mark.parametrize("rows, width", [(0, 16), (3, 16), (4, 5)])
def test_resume_refuses_intent_centroids_of_another_shape(partial_iclrec, tmp_path, capsys, rows, width):
    """Forged warm-start centroids once crashed mid-run (none), or silently changed the number of
    intents (fewer) or were dropped (another width)."""
    run = _copy(partial_iclrec, tmp_path / "run")
    assert load_checkpoint(run / "last.pt").intent_centroids.shape == (4, 16)  # ICLRec's mean over l: d
    _forged(run / "last.pt", run / "last.pt", lambda p: p.update(intent_centroids=torch.zeros(rows, width)))
    line = _one_line_error(lambda: cli.main(["--resume", str(run), "--quiet"]), capsys)
    assert f"intent_centroids of shape ({rows}, {width}), this run's k-means has (4, 16)" in line


def test_a_forged_note_cannot_edit_the_page(finished_results, tmp_path, capsys):
    sneaky = json.loads(json.dumps(finished_results))
    sneaky["note"] = "fine\n<!-- results:end -->\n<script>alert(1)</script> & more"
    source = tmp_path / "run.json"
    source.write_text(json.dumps(sneaky))
    report.main(_report(tmp_path, "--add", str(source)))
    page = (tmp_path / "page.md").read_text()
    assert "<script>" not in page and page.count(report.END) == 1 and "&lt;script>" in page
    report.main(_report(tmp_path))
    assert (tmp_path / "page.md").read_text() == page  # regenerating changes nothing
    report.main(_report(tmp_path, "--check"))  # and the page is up to date
    capsys.readouterr()
    line = _one_line_error(lambda: report.main(_report(tmp_path, "--check", "--add", str(source))), capsys)
    assert "--check writes nothing" in line


def _site_markdown() -> tuple[list[str], dict[str, Any]]:
    """The Markdown extensions and their settings of the docs site (``mkdocs.yml``)."""
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("pymdownx")
    names, configs = [], {}
    site = yaml.safe_load((Path(__file__).resolve().parents[1] / "mkdocs.yml").read_text())
    for entry in site["markdown_extensions"]:
        name = entry if isinstance(entry, str) else next(iter(entry))
        if name != "pymdownx.snippets":  # reads files named in the page: not needed for a note
            names.append(name)
            configs[name] = entry[name] if isinstance(entry, dict) else {}
    return names, configs


@pytest.mark.parametrize("note", [
    "[Added later] [Added again]",  # a reference link once failed the strict docs build
    "**bold**, _x_, `code`, a | b, [link](http://example.com), ![img](x.png), <b>, &amp;",
    "# heading", "- item", "> quote", "12. item", r"back\slash",
    r"$\tau_3$ and $x^{$ and \(y\)",  # math (pymdownx.arithmatex): a broken formula failed the build
    "{{ version }}",  # the docs hook's substitution
])
def test_a_note_renders_as_its_own_text(finished_results, tmp_path, note):
    """Notes are prose typed by hand; the page renders the generated section as Markdown (inside
    ``<details markdown="1">``) with the site's extensions, so a note must come out as the text it
    is, adding no element."""
    markdown = pytest.importorskip("markdown")
    names, configs = _site_markdown()

    def rendered(text: str, folder: Path) -> tuple[str, str]:
        folder.mkdir()
        run = json.loads(json.dumps(finished_results))
        run["note"] = text
        (folder / "run.json").write_text(json.dumps(run))
        report.main(_report(folder, "--add", str(folder / "run.json")))
        source = (folder / "page.md").read_text()
        return source, str(markdown.markdown(source, extensions=names, extension_configs=configs))

    (source, page), (_, plain) = rendered(note, tmp_path / "note"), rendered("plain words", tmp_path / "plain")
    tags = re.compile(r"<(\w+)")
    assert "<details>" in page and sorted(tags.findall(page)) == sorted(tags.findall(plain))
    assert html.escape(note, quote=False) in page and "arithmatex" not in page
    assert "{{ version }}" not in source


def test_huge_json_numbers_are_not_finite_numbers():
    from s4rec_example.cli_common import is_finite_number

    assert not is_finite_number(10**400) and is_finite_number(10**300) and not is_finite_number(True)


def test_a_data_root_that_is_a_file_is_one_line(tmp_path, capsys):
    root = tmp_path / "rootfile"
    root.write_text("x")
    line = _one_line_error(lambda: _train(tmp_path / "run", "--data", "Beauty", "--data-root", str(root)), capsys)
    assert "rootfile" in line and "is not a folder" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_rewritten_files_keep_their_permissions(tmp_path):
    """mkstemp's temp files are 0o600 and os.replace kept that: report.py narrowed the page's rights."""
    import os
    import stat

    from s4rec_example.checkpoint import atomic_write_text

    from s4rec_components.data._files import atomic_write_bytes

    umask = os.umask(0o022)
    try:
        for write in (atomic_write_text, lambda p, t: atomic_write_bytes(p, t.encode())):
            kept, new = tmp_path / f"kept-{id(write)}", tmp_path / f"new-{id(write)}"
            kept.write_text("a")
            kept.chmod(0o640)
            write(kept, "b")
            write(new, "c")
            assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and stat.S_IMODE(new.stat().st_mode) == 0o644
    finally:
        os.umask(umask)


@pytest.mark.parametrize("pooling", ["flatten", "mean_all", "last"])
def test_the_checked_centroid_shape_is_the_one_k_means_gives(pooling):
    from s4rec_example.config import TrainConfig
    from s4rec_example.intents import fit_intents, intent_centroid_shape
    from s4rec_example.model import build_model

    config = TrainConfig.from_preset("iclrec", hidden_size=8, num_heads=2, max_len=6, num_intents=5,
                                     intent_pooling=pooling)
    model = build_model(config, 20)
    for users in (3, 12):  # fewer sequences than intents: one cluster each
        inputs = torch.randint(1, 21, (users, 6), generator=torch.Generator().manual_seed(users))
        intents = fit_intents(model, inputs, num_intents=5, num_iters=2, seed=0, batch_size=4)
        assert tuple(intents.kmeans.centroids.shape) == intent_centroid_shape(config, users)


def test_the_run_list_names_every_resumed_call(finished_results, tmp_path):
    """A resumed run's line gave only its first call's machine and commit (a run cut on two
    threads and finished on one read as a two-thread run)."""
    resumed = json.loads(json.dumps(finished_results))
    resumed["resumes"] = [{"command": "x --resume run", "git_commit": "f" * 40, "machine": "Box, 1 thread(s)",
                           "after_epochs": 7}]
    source = tmp_path / "run.json"
    source.write_text(json.dumps(resumed))
    report.main(_report(tmp_path, "--add", str(source)))
    page = (tmp_path / "page.md").read_text()
    assert f"; resumed after 7 epochs on Box, 1 thread(s), commit `{'f' * 12}`" in page
    old_style = {k: v for k, v in resumed.items() if k != "resumes"} | {"resumed_with": "x --resume run"}
    source.write_text(json.dumps(old_style))
    report.main(_report(tmp_path, "--add", str(source)))
    page = (tmp_path / "page.md").read_text()
    assert "resumed with `--resume` (resumed_with in the file)" in page and "resumed after" not in page
