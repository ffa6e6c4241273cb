"""evaluate.py, report.py and headtail.py of the example, on a tiny finished run."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s4rec_components import SASRecEncoder, generate_synthetic, rank_targets, ranking_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "s4rec"))

from s4rec_example import cli, evaluate, headtail, report  # noqa: E402
from s4rec_example.checkpoint import load_checkpoint  # noqa: E402
from s4rec_example.config import TrainConfig, inert_settings  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "s4rec"
KEYS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
NUM_ITEMS, MAX_LEN = 40, 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished s4rec run on a dataset file (so evaluate.py can read the same data)."""
    folder = tmp_path_factory.mktemp("eval")
    data_path = generate_synthetic(num_users=120, num_items=NUM_ITEMS, seed=5).save(folder / "tiny.txt")
    results = cli.train(["--preset", "s4rec", "--data", str(data_path), "--epochs", "2", "--output",
                         str(folder / "run"), "--max-len", str(MAX_LEN), "--hidden-size", "16", "--batch-size", "32",
                         "--num-prototypes", "8", "--quiet"])
    return folder, data_path, results


def test_best_and_last_checkpoints_both_evaluate(run, capsys):
    folder, data_path, results = run
    best = evaluate.main(["--data", str(data_path), "--checkpoint", str(folder / "run" / "best.pt"), "--json"])
    assert best == results["test"]  # the same numbers train.py reported for its best model
    assert capsys.readouterr().out.strip().splitlines()[-1] == json.dumps(best)
    last = evaluate.main(["--data", str(data_path), "--checkpoint", str(folder / "run" / "last.pt"),
                          "--split", "valid"])
    assert list(last) == KEYS
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == KEYS and table.splitlines()[1].startswith("valid")
    if results["best_epoch"] == results["history"][-1]["epoch"]:
        assert last == results["valid"]
    assert all(len(repr(v).split(".")[-1]) <= evaluate.METRIC_DIGITS for v in best.values())


def test_without_data_a_checkpoint_is_evaluated_on_its_own_data(run, tmp_path, capsys):
    folder, data_path, results = run
    # a dataset file: the path recorded in the checkpoint
    assert evaluate.main(["--checkpoint", str(folder / "run" / "best.pt"), "--json"]) == results["test"]
    # generated data: regenerated from the checkpoint's settings and seed
    generated = cli.train(["--preset", "sasrec", "--epochs", "1", "--output", str(tmp_path / "gen"), "--seed", "3",
                           "--synthetic-users", "90", "--synthetic-items", "30", "--max-len", str(MAX_LEN),
                           "--hidden-size", "16", "--quiet"])
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(tmp_path / "gen" / "best.pt"), "--json"]) == generated["test"]
    # ICLRec's files do not say which data they were trained on
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--iclrec-checkpoint", str(folder / "run" / "best.pt")])
    assert exit_info.value.code == 2 and "needs --data" in capsys.readouterr().err


def test_a_checkpoint_on_other_data_is_refused(run, tmp_path, capsys):
    folder, _, _ = run
    checkpoint = str(folder / "run" / "best.pt")
    other = generate_synthetic(num_users=60, num_items=NUM_ITEMS + 5, seed=1).save(tmp_path / "other.txt")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--data", str(other), "--checkpoint", checkpoint])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert "trained on 40 items" in err[0] and "has 45" in err[0]
    # same number of items, other raw ids (re-indexed on load): refused too
    remapped = tmp_path / "remapped.txt"
    remapped.write_text("".join(f"{u} " + " ".join(str(1000 + 7 * ((u + j) % NUM_ITEMS)) for j in range(6)) + "\n"
                                for u in range(1, NUM_ITEMS + 1)))
    with pytest.raises(SystemExit):
        evaluate.main(["--data", str(remapped), "--checkpoint", checkpoint])
    assert "other raw ids" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "/no/such.pt"], "no such file"),
        (["--checkpoint", "RUN"], "is a folder, not a checkpoint file (a run folder: pass its best.pt or last.pt)"),
        (["--checkpoint", "BEST", "--output", "ranks.csv"], "must end in .pt or .json"),
        (["--checkpoint", "BEST", "--output", "ranks"], "must end in .pt or .json"),
        (["--checkpoint", "BEST", "--device", "cuda:7" if torch.cuda.is_available() else "cuda"], "--device"),
        (["--checkpoint", "BEST", "--eval-batch-size", "0"], "must be >= 1"),
        (["--checkpoint", "BEST", "--max-len", "11"], "exceeds the checkpoint's position table"),
        ([], "one of the arguments --checkpoint --iclrec-checkpoint is required"),
    ],
)
def test_evaluate_argument_errors_exit_2(run, argv, message, capsys):
    folder, data_path, _ = run
    named = {"BEST": str(folder / "run" / "best.pt"), "RUN": str(folder / "run")}
    argv = [named.get(a, a) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--data", str(data_path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and message in err[0]


def test_iclrec_checkpoint_matches_library_ranking_and_script_entry_point(run, tmp_path):
    _, data_path, _ = run
    torch.manual_seed(0)
    encoder = SASRecEncoder(NUM_ITEMS, hidden_size=16, num_layers=1, num_heads=4, max_len=MAX_LEN)
    path = tmp_path / "iclrec.pt"
    torch.save(encoder.to_iclrec_state_dict(), path)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "evaluate.py"), "--data", str(data_path), "--iclrec-checkpoint", str(path),
         "--num-heads", "4", "--iclrec-quirk", "--json", "--threads", "1", "--output", str(tmp_path / "ranks.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    split = evaluate.load_dataset(evaluate.TrainConfig(data=str(data_path))).split(max_len=MAX_LEN)
    encoder.eval()
    with torch.no_grad():
        scores = encoder.represent(split.test_inputs) @ encoder.item_embeddings.weight.T  # all n + 2 columns
        history = split.history("test")
        padded = history if isinstance(history, torch.Tensor) else history.pad_rows(torch.arange(history.num_rows))
        ranks = rank_targets(scores, split.test_targets, exclude=padded, ignore_ids=(), history_value=0.0)
    expected = ranking_metrics(ranks)
    assert metrics == pytest.approx({k: expected[k] for k in KEYS}, abs=1e-6)
    saved = json.loads((tmp_path / "ranks.json").read_text())
    assert [u["rank"] for u in saved["users"]] == ranks.tolist()


_curve = st.dictionaries(st.integers(0, 30), st.floats(0.0, 1.0), min_size=1, max_size=12).map(
    lambda d: sorted(d.items()))


@settings(max_examples=60, deadline=None)
@given(curves=st.lists(_curve, min_size=1, max_size=4))
def test_mean_curve_averages_the_epochs_every_seed_has(curves):
    mean = report.mean_curve(curves)
    every_epoch = sorted({e for c in curves for e, _ in c})  # by hand: an epoch counts if each seed has it
    shared = [e for e in every_epoch if all(any(ep == e for ep, _ in c) for c in curves)]
    assert [e for e, _ in mean] == shared  # only epochs that every seed validated, in order
    for e, v in mean:  # slow reference: look each seed's value up by hand
        values = [next(x for ep, x in c if ep == e) for c in curves]
        assert math.isclose(v, sum(values) / len(values), rel_tol=1e-12, abs_tol=1e-15)
    backwards = report.mean_curve(list(reversed(curves)))  # seed order does not matter
    assert [e for e, _ in backwards] == shared
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for (_, a), (_, b) in zip(backwards, mean))
    assert report.mean_curve(curves[:1]) == curves[0]  # one seed: its own curve
    assert report.mean_curve([]) == []


def test_report_tables_and_curves_come_from_results_files(run, tmp_path):
    folder, _, results = run
    results_dir, img_dir = tmp_path / "results", tmp_path / "img"
    page = tmp_path / "page.md"
    page.write_text(f"# Reproduction\n\nintro\n\n{report.BEGIN}\nold\n{report.END}\n\nafter\n")
    report.main(["--results-dir", str(results_dir), "--page", str(page), "--img-dir", str(img_dir),
                 "--add", str(folder / "run"), "--quiet"])
    copied = results_dir / report.results_name(results)
    # settings off the preset's defaults name the file, so that other recipes never overwrite it
    assert copied.name.startswith("tiny-s4rec-bce-s0+") and "+hidden_size-16" in copied.name
    assert json.loads(copied.read_text())["test"] == results["test"]
    text = page.read_text()
    assert text.startswith("# Reproduction\n\nintro") and text.rstrip().endswith("after") and "old" not in text
    row = next(line for line in text.splitlines() if line.startswith("| `s4rec`"))
    assert f"{results['test']['NDCG@20']:.4f}" in row and len(row.split("|")) <= 11  # few columns
    assert '<details markdown="1">' in text and results["command"] in text
    if importlib.util.find_spec("matplotlib") is not None:  # the figures need it (the examples' extra)
        assert (img_dir / "curves-tiny-bce.png").is_file() and "img/curves-tiny-bce.png" in text
    else:
        assert "curves-tiny-bce.png" not in text  # no figure, no link
    report.main(["--results-dir", str(results_dir), "--page", str(page), "--img-dir", str(img_dir), "--check",
                 "--quiet"])  # up to date: no exit
    page.write_text(text.replace(f"{results['test']['NDCG@20']:.4f}", "0.9999"))
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--results-dir", str(results_dir), "--page", str(page), "--img-dir", str(img_dir), "--check"])
    assert exit_info.value.code == 1


def test_report_shows_a_head_tail_study_under_its_dataset(run, tmp_path):
    folder, _, results = run
    results_dir, docs = tmp_path / "docs" / "results", tmp_path / "docs"
    study_dir = results_dir / "headtail-tiny-bce"
    headtail.main(["--runs", str(folder / "run"), "--output", str(study_dir), "--quiet"])
    page = docs / "page.md"
    page.write_text(f"# R\n\n{report.BEGIN}\n{report.END}\n")
    report.main(["--results-dir", str(results_dir), "--page", str(page), "--img-dir", str(docs / "img"),
                 "--add", str(folder / "run"), "--quiet", "--no-figures"])
    text = page.read_text()
    section = text[text.index("#### Head and tail users"):]
    assert text.index("### tiny") < text.index("#### Head and tail users")  # under its dataset
    study = json.loads((study_dir / "headtail.json").read_text())
    (entry,) = study["summary"]
    row = next(line for line in section.splitlines() if line.startswith(f"| {report._prose(entry['label'])} |"))
    assert f"{entry['tail']['NDCG@20']['mean']:.4f}" in row and f"{entry['length_information']['mean']:.4f}" in row
    assert "(results/headtail-tiny-bce/head_rate_boxplot.png)" in section  # relative to the page
    assert report.results_name(results) in section and study["command"] in section
    report.main(["--results-dir", str(results_dir), "--page", str(page), "--img-dir", str(docs / "img"), "--check",
                 "--quiet"])
    (study_dir / "head_rate_boxplot.png").unlink(missing_ok=True)  # a figure that is not there is not linked
    report.main(["--results-dir", str(results_dir), "--page", str(page), "--img-dir", str(docs / "img"), "--quiet",
                 "--no-figures"])
    assert "head_rate_boxplot.png" not in page.read_text()
    good = (study_dir / "headtail.json").read_text()
    for bad in ["[]", "{", '{"runs": [1], "summary": [1]}', '{"runs": {"a": 1}, "summary": [1]}',
                '{"runs": [{"data": "x"}], "summary": [{"label": "a"}]}']:
        (study_dir / "headtail.json").write_text(bad)  # e.g. a list, as headtail.py wrote before provenance
        with pytest.raises(SystemExit) as exit_info:
            report.main(["--results-dir", str(results_dir), "--page", str(page), "--img-dir", str(docs / "img"),
                         "--check"])
        assert exit_info.value.code == 2, bad
    (study_dir / "headtail.json").write_text(good)


def test_headtail_studies_an_iclrec_run_beside_an_s4rec_run(run, tmp_path):
    """ICLRec's intents are refit by k-means on the best model; the study's laws hold for both."""
    folder, data_path, results = run
    iclrec = cli.train(["--preset", "iclrec", "--data", str(data_path), "--epochs", "2", "--output",
                        str(tmp_path / "iclrec"), "--max-len", str(MAX_LEN), "--hidden-size", "16",
                        "--batch-size", "32", "--num-intents", "6", "--kmeans-redo", "1", "--quiet"])
    studied = headtail.main(["--runs", str(folder / "run"), str(tmp_path / "iclrec"), "--output",
                             str(tmp_path / "ht"), "--quiet"])
    by_preset = {entry["preset"]: entry for entry in studied}
    for preset, reported in [("iclrec", iclrec), ("s4rec", results)]:  # the models train.py tested
        assert by_preset[preset]["metrics"]["all"] == pytest.approx(reported["test"], abs=1e-6)  # (6 digits)
    for preset, clusters in [("iclrec", 6), ("s4rec", 8)]:
        rate = by_preset[preset]["head_rate"]
        sizes, per_cluster = torch.tensor(rate["cluster_sizes"]), torch.tensor(rate["per_cluster"], dtype=torch.float64)
        assert sizes.numel() == clusters and int(sizes.sum()) == 120  # every user in exactly one cluster
        used = sizes[sizes > 0].double()
        # the clusters' head rates, weighted by their sizes, give back the population's head share
        assert float((per_cluster * used).sum() / used.sum()) == pytest.approx(rate["overall_head_share"])
        assert 0.0 <= rate["length_information"] <= 0.7
        metrics = by_preset[preset]["metrics"]
        assert metrics["num_head"] + metrics["num_tail"] == 120
        for key in KEYS:  # head and tail users split the population: their metrics average back to it
            mixed = (metrics["head"][key] * metrics["num_head"] + metrics["tail"][key] * metrics["num_tail"]) / 120
            assert mixed == pytest.approx(metrics["all"][key])


def test_headtail_refuses_runs_of_different_datasets(run, tmp_path, monkeypatch):
    folder, _, _ = run
    studied = []
    real_study_run = headtail.study_run
    monkeypatch.setattr(headtail, "study_run", lambda *a: studied.append(a) or real_study_run(*a))
    other = generate_synthetic(num_users=60, num_items=NUM_ITEMS, seed=6).save(tmp_path / "other.txt")
    cli.train(["--preset", "s4rec", "--data", str(other), "--epochs", "1", "--output", str(tmp_path / "other"),
               "--max-len", str(MAX_LEN), "--hidden-size", "16", "--batch-size", "32", "--num-prototypes", "8",
               "--quiet"])
    with pytest.raises(SystemExit) as exit_info:  # their users differ: one table would mix them
        headtail.main(["--runs", str(folder / "run"), str(tmp_path / "other"), "--output", str(tmp_path / "ht"),
                       "--quiet"])
    assert exit_info.value.code == 2 and not (tmp_path / "ht" / "headtail.json").exists()
    assert studied == []  # refused before the (slow) study of any run


def test_report_marks_runs_stopped_by_the_time_budget(run):
    _, _, results = run
    assert results["stopped_by"] == "max_epochs"
    cut = json.loads(json.dumps(results))
    cut["config"]["seed"], cut["stopped_by"], cut["_file"] = 1, "time_budget", "cut.json"
    legacy = {k: v for k, v in json.loads(json.dumps(results)).items() if k != "stopped_by"}
    legacy["config"]["seed"], legacy["stopped_early"], legacy["_file"] = 2, True, "legacy.json"
    whole = {**results, "_file": "whole.json"}
    text = report.render_tables([whole, cut, legacy], None, {})
    last = cut["history"][-1]["epoch"]
    row = next(line for line in text.splitlines() if line.startswith("| `s4rec`"))
    assert row.rstrip(" |").endswith(f"{results['best_epoch']}, {results['best_epoch']} †{last}, {results['best_epoch']}")
    assert "† N: stopped at epoch N by the time budget" in text and "not converged" in text
    assert f"stopped at epoch {last} by the time budget, not converged" in text
    assert "epoch cap" in text and "early stopping" in text  # whole and legacy
    assert "†" not in report.render_tables([whole, legacy], None, {})


def test_headtail_study_uses_the_clustering_head(run, tmp_path):
    folder, _, _ = run
    results = headtail.main(["--runs", str(folder / "run"), "--output", str(tmp_path / "ht"), "--quiet"])
    (study,) = results
    rates = study["head_rate"]
    assert sum(rates["cluster_sizes"]) == 120 and rates["clusters_used"] == len(rates["per_cluster"])
    head, tail = study["metrics"]["num_head"], study["metrics"]["num_tail"]
    assert head + tail == 120 and rates["overall_head_share"] == pytest.approx(head / 120)
    all_users = study["metrics"]["all"]["NDCG@20"]
    mixed = (head * study["metrics"]["head"]["NDCG@20"] + tail * study["metrics"]["tail"]["NDCG@20"]) / 120
    assert all_users == pytest.approx(mixed, abs=1e-9)
    checkpoint = load_checkpoint(folder / "run" / "best.pt")
    assert checkpoint.config.preset == "s4rec" and study["label"].startswith("s4rec (batch_size=32") and study["seed"] == 0
    saved = json.loads((tmp_path / "ht" / "headtail.json").read_text())
    assert saved["runs"] == results and saved["command"].startswith("python examples/s4rec/headtail.py --runs")
    (summary,) = saved["summary"]
    assert summary["seeds"] == [0] and summary["tail"]["NDCG@20"] == {"mean": study["metrics"]["tail"]["NDCG@20"], "std": 0.0}
    assert 0.0 <= rates["length_information"] <= 0.7


def _slow_mutual_information(assignments: list[int], heads: list[bool]) -> float:
    """I(C; H) from the definition, one (cluster, flag) pair at a time."""
    n = len(assignments)
    total = 0.0
    for c in set(assignments):
        for h in (False, True):
            joint = sum(1 for a, x in zip(assignments, heads) if a == c and x == h) / n
            if joint > 0:
                pc = assignments.count(c) / n
                ph = heads.count(h) / n
                total += joint * math.log(joint / (pc * ph))
    return total


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_length_information_is_the_mutual_information_of_cluster_and_flag(pairs):
    assignments, heads = [a for a, _ in pairs], [h for _, h in pairs]
    got = headtail.length_information(torch.tensor(assignments), torch.tensor(heads), 6)
    assert got == pytest.approx(_slow_mutual_information(assignments, heads), abs=1e-12)


def test_length_information_is_zero_for_even_clusters_and_the_flag_entropy_for_separating_ones():
    heads = torch.tensor([True, False, False, False] * 5)
    even = torch.arange(20) // 4  # every cluster: one head user of four
    assert headtail.length_information(even, heads, 5) == pytest.approx(0.0, abs=1e-15)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert headtail.length_information(heads.long(), heads, 2) == pytest.approx(entropy, rel=1e-12)


def test_summary_averages_seeds_of_one_label_and_keeps_labels_apart():
    def study(label, seed, ndcg, iqr):
        group = {"NDCG@20": ndcg}
        return {"label": label, "seed": seed, "metrics": {"all": group, "head": group, "tail": group},
                "head_rate": {"iqr": iqr, "length_information": iqr / 10}}

    summary = headtail.summarize([study("s4rec", 0, 0.04, 0.2), study("sr+csd", 0, 0.05, 0.1),
                                  study("s4rec", 1, 0.06, 0.4)])
    assert [s["label"] for s in summary] == ["s4rec", "sr+csd"] and summary[0]["seeds"] == [0, 1]
    assert summary[0]["head"]["NDCG@20"]["mean"] == pytest.approx(0.05)
    assert summary[0]["head"]["NDCG@20"]["std"] == pytest.approx(0.02 ** 0.5 / 10)
    assert summary[0]["iqr"]["mean"] == pytest.approx(0.3) and summary[1]["iqr"]["std"] == 0.0


def test_report_names_a_setting_a_run_predates_by_its_default(run):
    """A results file written before a setting existed ran with that setting's default; when
    the preset now sets it otherwise, the run is a variant, not the preset's row."""
    _, _, results = run
    old = json.loads(json.dumps(results))
    old["config"] = {**old["config"], "preset": "iclrec"}
    for key in list(old["config"]):
        if key not in {"preset", "data", "seed", "loss"}:
            old["config"][key] = TrainConfig.from_preset("iclrec").to_dict()[key]
    assert report._variant(old) == ""
    del old["config"]["kmeans_warm_start"]  # the iclrec preset sets it; the default is off
    assert report._variant(old) == "kmeans_warm_start=False"
    assert report.results_name(old).endswith("+kmeans_warm_start-False.json")


def test_report_ignores_a_setting_whose_term_is_off(run):
    """tau_3 cannot change a run without the distillation (beta2 = 0): an old ``sasrec`` file
    with another tau_3 is still the preset's row, an ``s4rec`` file with it is a variant."""
    _, _, results = run
    old = json.loads(json.dumps(results))
    for preset, expected in (("sasrec", ""), ("s4rec-no-csd", ""), ("s4rec", "distill_temperature=0.1")):
        old["config"] = {**TrainConfig.from_preset(preset).to_dict(), "distill_temperature": 0.1}
        assert report._variant(old) == expected, preset


@pytest.mark.parametrize("preset, changes, inert", [
    ("sasrec", {}, {"distill_temperature", "detach_teacher", "cl_intent_negative_scale",
                    "cl_positive_in_denominator"}),
    ("cl4srec", {}, {"distill_temperature", "detach_teacher", "cl_intent_negative_scale"}),
    ("iclrec", {"beta1": 0.0}, {"distill_temperature", "detach_teacher", "cl_intent_negative_scale"}),
    ("s4rec", {}, set()),
    ("s4rec", {"cl_similarity": "cosine"}, {"cl_intent_negative_scale"}),
    ("s4rec", {"cl_intent_negatives": False}, {"cl_intent_negative_scale"}),
    ("s4rec-no-csd", {}, {"distill_temperature", "detach_teacher", "cl_intent_negative_scale",
                          "cl_positive_in_denominator"}),
])
def test_a_setting_is_inert_exactly_when_its_term_is_off(preset, changes, inert):
    assert inert_settings(TrainConfig.from_preset(preset, **changes).to_dict()) == inert


_CHANGES = st.fixed_dictionaries({}, optional={
    "batch_size": st.sampled_from([128, 256, 512]),
    "distill_temperature": st.sampled_from([0.1, 1.0]),
    "kmeans_warm_start": st.booleans(),
    "normalize_z": st.booleans(),
    "z_pooling": st.sampled_from(["mean", "last"]),
    "detach_teacher": st.booleans(),
    "cl_positive_in_denominator": st.booleans(),
    "cl_intent_negative_scale": st.sampled_from([1.0, 8.0]),
    "augment_operations": st.sampled_from([("crop", "mask", "reorder"), ("crop", "insert")]),
    "epochs": st.sampled_from([None, 7]),
})


@settings(max_examples=40, deadline=None)
@given(preset=st.sampled_from(sorted(cli.PRESETS)), seed=st.integers(0, 3), changes=_CHANGES,
       generated=st.booleans())
def test_repeat_flags_rebuild_the_settings_a_run_had(preset, seed, changes, generated):
    """Law: the recorded command plus the flags, read by today's train.py, gives the run's
    settings and epoch cap; every flag names a setting today's reading changes; a run on
    today's preset needs none."""
    data = [] if generated else ["--data", "../shared/data/Beauty.txt"]
    command = " ".join(["python examples/s4rec/train.py", *data, "--preset", preset, "--seed", str(seed)])
    ran = TrainConfig.from_preset(preset, data=None if generated else "../shared/data/Beauty.txt", seed=seed,
                                  **changes)
    flags = cli.repeat_flags(command, ran.to_dict(), ran.resolved_epochs)
    rebuilt = cli.config_from_args(cli.build_parser().parse_args(command.split()[2:] + flags))
    today = TrainConfig.from_preset(preset, data=ran.data, seed=seed)
    off = {"data_root", "device", "eval_batch_size", "epochs"} | inert_settings(ran.to_dict())
    assert {k: v for k, v in rebuilt.to_dict().items() if k not in off} == {
        k: v for k, v in ran.to_dict().items() if k not in off}
    assert rebuilt.resolved_epochs == ran.resolved_epochs
    named = {f.lstrip("-").removeprefix("no-").replace("-", "_") for f in flags if f.startswith("--")}
    assert all(today.to_dict()[k] != ran.to_dict()[k] for k in named - {"epochs"})
    if "epochs" in named:
        assert today.resolved_epochs != ran.resolved_epochs or rebuilt.batch_size != today.batch_size
    if not changes:
        assert flags == []


def test_report_says_how_to_repeat_a_run_the_presets_have_moved_from(run):
    """A run at a batch the preset no longer has gets the flag on the page; a command today's
    train.py refuses is said to be so, with the file's config as the record."""
    _, _, results = run
    old = json.loads(json.dumps(results))
    old["config"]["batch_size"] = 64
    assert "add `--batch-size 64` to repeat the run today" in report._repeat(old)
    assert report._repeat(results) == ""
    old["command"] = "python examples/s4rec/train.py --no-such-flag 1"
    assert "cannot repeat this command as it stands (unrecognized arguments: --no-such-flag 1" in report._repeat(old)
    old["command"] = "python examples/s4rec/train.py --help"
    assert "cannot repeat this command as it stands (it exits before training" in report._repeat(old)
    old["command"] = "python examples/s4rec/train.py --preset 'unbalanced"
    assert "cannot repeat this command as it stands (No closing quotation)" in report._repeat(old)
    with pytest.raises(ValueError, match="not a train.py command"):
        cli.repeat_flags("python evaluate.py --preset s4rec", results["config"], 2)


def _grid_run(preset: str, seed: int, valid: float, test: float, **settings) -> dict:
    """A results record of ``preset`` with ``settings`` changed, as report.py loads it."""
    config = {**TrainConfig.from_preset(preset).to_dict(), "data": "Beauty.txt", "seed": seed, **settings}
    return {"config": config, "valid": {"NDCG@20": valid}, "test": {"NDCG@20": test}}


def test_sensitivity_collects_runs_that_differ_from_s4rec_in_one_grid_setting():
    from s4rec_example.sensitivity import grid_points, render_sensitivity

    runs = [
        _grid_run("s4rec", 0, 0.0630, 0.050), _grid_run("s4rec", 1, 0.0620, 0.048),
        _grid_run("s4rec", 2, 0.0600, 0.047),  # seed 2 only at the preset: left out of the paired column
        _grid_run("s4rec-no-gr", 0, 0.0640, 0.049), _grid_run("s4rec-no-gr", 1, 0.0640, 0.051),  # lam = 0
        _grid_run("s4rec", 0, 0.0610, 0.052, lam=0.1),
        _grid_run("s4rec", 0, 0.0700, 0.060, lam=0.1, batch_size=256),  # two settings off: not a grid point
        _grid_run("s4rec", 0, 0.0700, 0.060, batch_size=256),  # one setting off, not of the grid
        _grid_run("s4rec-no-csd", 0, 0.0500, 0.040),  # beta1 and beta2 both off
        _grid_run("sasrec", 0, 0.0500, 0.040),
    ]
    points = grid_points(runs, report._dataset)
    assert list(points) == ["Beauty-bce"] and list(points["Beauty-bce"]) == ["lam"]
    lam = points["Beauty-bce"]["lam"]
    assert sorted(lam) == [0.0, 0.1, 1.0] and [len(lam[v]) for v in (0.0, 0.1, 1.0)] == [2, 1, 3]
    lines = render_sensitivity(points, {})["Beauty"]
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
            for line in lines if line.startswith("| λ")}
    # lam = 0 vs the preset on seeds 0 and 1: valid (0.0010 + 0.0020) / 2, test (-0.001 + 0.003) / 2
    assert rows["0"] == ["v", "0, 1", "0.0640", "0.0500", "+0.0015", "+0.0010"]
    assert rows["0.1"] == ["", "0", "0.0610", "0.0520", "-0.0020", "+0.0020"]  # the test gain does not pick
    assert rows["1"] == ["p", "0, 1, 2", f"{(0.063 + 0.062 + 0.060) / 3:.4f}", "0.0483", "+0.0000", "+0.0000"]


def test_sensitivity_needs_two_values_and_draws_one_figure(tmp_path):
    from s4rec_example.sensitivity import draw_sensitivity, grid_points

    assert grid_points([_grid_run("s4rec", 0, 0.06, 0.05)], report._dataset) == {}
    assert grid_points([_grid_run("s4rec", 0, 0.06, 0.05, alpha=0.1)], report._dataset) == {}  # no centre run
    points = grid_points([_grid_run("s4rec", 0, 0.06, 0.05), _grid_run("s4rec", 0, 0.061, 0.05, alpha=0.1),
                          _grid_run("s4rec", 0, 0.059, 0.05, distill_temperature=0.1)], report._dataset)
    assert list(points["Beauty-bce"]) == ["alpha", "distill_temperature"]  # the paper's order
    pytest.importorskip("matplotlib")
    assert draw_sensitivity(points, tmp_path) == {"Beauty-bce": "params-Beauty-bce.png"}
    assert (tmp_path / "params-Beauty-bce.png").stat().st_size > 0


def test_sensitivity_y_range_keeps_a_collapsed_run_from_squashing_the_panels():
    from s4rec_example.sensitivity import _y_range, grid_points

    runs = [_grid_run("s4rec", 0, 0.0630, 0.050), _grid_run("s4rec", 0, 0.0610, 0.048, alpha=0.1),
            _grid_run("s4rec", 0, 0.0045, 0.005, cl_temperature=0.1)]
    low, high = _y_range(grid_points(runs, report._dataset)["Beauty-bce"])
    assert 0.005 < low < 0.048 and high > 0.063  # every healthy score on the scale, the collapsed one below
    assert high - low < 0.03  # a scale for differences of 0.001, not for 0.0045 .. 0.063
    healthy = [_grid_run("s4rec", 0, 0.0630, 0.050), _grid_run("s4rec", 0, 0.0610, 0.048, alpha=0.1)]
    low, high = _y_range(grid_points(healthy, report._dataset)["Beauty-bce"])
    assert low < 0.048 and high > 0.063
    collapsed = [_grid_run("s4rec", s, 0.001, 0.001, cl_temperature=0.1) for s in range(6)]
    low, high = _y_range(grid_points(healthy + collapsed, report._dataset)["Beauty-bce"])
    assert low == 0.0 < high  # mostly collapsed: the scale shows them all, never below 0


def test_sensitivity_figure_draws_off_scale_means_and_seeds(tmp_path):
    from s4rec_example.sensitivity import draw_sensitivity, grid_points

    pytest.importorskip("matplotlib")
    runs = [_grid_run("s4rec", s, 0.063, 0.050) for s in range(3)]
    runs += [_grid_run("s4rec", 0, 0.0045, 0.005, cl_temperature=0.1),  # a collapsed mean
             _grid_run("s4rec", 0, 0.061, 0.048, alpha=0.1), _grid_run("s4rec", 1, 0.062, 0.049, alpha=0.1),
             _grid_run("s4rec", 2, 0.004, 0.003, alpha=0.1)]  # one collapsed seed, its mean on the scale
    points = grid_points(runs, report._dataset)
    assert draw_sensitivity(points, tmp_path) == {"Beauty-bce": "params-Beauty-bce.png"}
    assert (tmp_path / "params-Beauty-bce.png").stat().st_size > 0


def test_summary_figure_draws_the_plain_bce_presets_beside_the_paper(tmp_path, monkeypatch):
    """One figure of the presets' test NDCG@20: plain bce runs only (a variant, a ce run and an
    ablation preset are left out); the paper's rows where it has them; nothing without such runs."""
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    runs = [_grid_run("sasrec", s, 0.05, 0.040 + s / 1000) for s in range(3)] + [
        _grid_run("s4rec", 0, 0.06, 0.049), _grid_run("s4rec", 0, 0.06, 0.030, lam=0.1),
        _grid_run("s4rec", 1, 0.06, 0.020, loss="ce"), _grid_run("sr+csd", 0, 0.06, 0.050)]
    paper = {"table2": {"Beauty": {"SASRec": [0.1, 0.2, 0.3, 0.0387]}}, "table3_beauty_ablation": {}}
    drawn: list[tuple[float, float]] = []
    errorbar = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, **kw: drawn.append((x, y)) or errorbar(self, x, y, **kw))
    assert report.draw_summary(runs, paper, tmp_path) == report.SUMMARY_FIGURE
    assert (tmp_path / report.SUMMARY_FIGURE).stat().st_size > 0
    assert [round(y, 6) for _, y in drawn] == [0.041, 0.049]  # sasrec's mean of 3 seeds, s4rec's one plain run
    assert report.draw_summary([_grid_run("sr+csd", 0, 0.06, 0.05)], paper, tmp_path / "none") is None
    assert not (tmp_path / "none").exists()


def test_sensitivity_edge_cases_keys_ties_missing_scores_and_repeated_seeds(caplog):
    from s4rec_example.sensitivity import grid_points, render_sensitivity

    def rows(runs):
        lines = render_sensitivity(grid_points(runs, report._dataset), {})["Beauty"]
        return {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
                for line in lines if line.startswith("| λ")}

    centre = [_grid_run("s4rec", 0, 0.0630, 0.050), _grid_run("s4rec", 1, 0.0620, 0.048)]
    # a value within rounding of the preset's is the preset's row, not a second "1"
    got = rows([*centre, _grid_run("s4rec", 2, 0.0610, 0.047, lam=1.0000000001),
                _grid_run("s4rec", 0, 0.0610, 0.049, lam=0.1)])
    assert set(got) == {"0.1", "1"} and got["1"][1] == "0, 1, 2"
    # a tie on valid keeps the preset's value: the grid moves only for a strict improvement
    got = rows([*centre, _grid_run("s4rec", 0, 0.0630, 0.060, lam=0.1)])
    assert got["1"][0] == "p v" and got["0.1"][0] == ""
    # a run without a valid score is left out with a warning instead of crashing the report
    broken = _grid_run("s4rec", 1, 0.0, 0.0, lam=0.1)
    broken["valid"] = None
    with caplog.at_level("WARNING", logger="s4rec.report"):
        got = rows([*centre, _grid_run("s4rec", 0, 0.0640, 0.050, lam=0.1), broken])
    assert got["0.1"][1] == "0" and "left out of the one-setting analysis" in caplog.text
    assert got["0.1"][0] == "v" and got["0.1"][4] == "+0.0010"
    # a seed run twice counts once in the mean, as in the paired difference
    got = rows([*centre, _grid_run("s4rec", 0, 0.0600, 0.050), _grid_run("s4rec", 0, 0.0650, 0.050, lam=0.1)])
    assert got["1"][1] == "0, 1" and got["1"][2] == f"{((0.063 + 0.060) / 2 + 0.062) / 2:.4f}"
