"""compare.py: the paper's paired t-test over users, on the per-user files of evaluate.py --output."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s4rec_components import RankingResult, generate_synthetic, ranking_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "s4rec"))

from s4rec_example import compare  # noqa: E402
from s4rec_example.evaluate import write_per_user  # noqa: E402

scipy_stats = pytest.importorskip("scipy.stats")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "s4rec"
DATASET = generate_synthetic(num_users=60, num_items=30, seed=2)


def _write(path: Path, ranks: torch.Tensor, split: str = "test", data: str = "tiny.txt") -> Path:
    """``ranks`` as evaluate.py --output writes them (the format follows the suffix)."""
    model = {"source": f"model {path.stem}", "data": data, "label": "a recipe, seed 0", "results_file": ""}
    write_per_user(path, RankingResult(ranking_metrics(ranks), ranks), DATASET, split, model)
    return path


def _ranks(seed: int, high: int = 30) -> torch.Tensor:
    return torch.randint(0, high, (DATASET.num_users,), generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=80), st.integers(1, 60))
def test_per_user_gains_average_to_the_library_metrics(values, k):
    ranks = torch.tensor(values)
    hit, ndcg = compare.per_user_gains(ranks, k)
    expected = ranking_metrics(ranks, ks=(k,))
    assert float(hit.mean()) == pytest.approx(expected[f"HR@{k}"], abs=1e-12)
    assert float(ndcg.mean()) == pytest.approx(expected[f"NDCG@{k}"], abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=2, max_size=60))
def test_the_test_matches_a_slow_reference_and_scipy(pairs):
    a, b = (torch.tensor([p[i] for p in pairs]) for i in (0, 1))
    for k in (1, 5, 20):
        ga, gb = compare.per_user_gains(a, k)[1], compare.per_user_gains(b, k)[1]
        test = compare.paired_t_test("NDCG", ga, gb)
        d = [1 / math.log2(x + 2) * (x < k) - 1 / math.log2(y + 2) * (y < k) for x, y in pairs]
        mean = math.fsum(d) / len(d)
        assert test.difference == pytest.approx(mean, abs=1e-12)
        if max(d) - min(d) < 1e-12:  # no spread: the test is decided by the mean alone
            assert (test.p, test.t) == ((1.0, 0.0) if mean == 0 else (0.0, math.copysign(math.inf, mean)))
            continue
        se = statistics.stdev(d) / math.sqrt(len(d))
        reference = scipy_stats.ttest_rel([float(v) for v in ga], [float(v) for v in gb])
        assert test.t == pytest.approx(mean / se, rel=1e-9)
        assert test.t == pytest.approx(float(reference.statistic), rel=1e-9)
        assert test.p == pytest.approx(float(reference.pvalue), rel=1e-7, abs=1e-300)
        half = scipy_stats.t.ppf(0.975, len(d) - 1) * se
        assert (test.low, test.high) == (pytest.approx(mean - half, abs=1e-12), pytest.approx(mean + half, abs=1e-12))


def test_swapping_the_models_mirrors_the_test_and_row_order_does_not_matter(tmp_path):
    a, b = _write(tmp_path / "a.pt", _ranks(0)), _write(tmp_path / "b.json", _ranks(1, high=10))
    forward, backward = compare.main([str(a), str(b), "--json"]), compare.main([str(b), str(a), "--json"])
    expected = [{k: round(v, 6) for k, v in ranking_metrics(r).items()} for r in (_ranks(0), _ranks(1, high=10))]
    for t in forward:
        assert (t.a, t.b) == (expected[0][t.metric], expected[1][t.metric])
        assert t.difference == pytest.approx(t.a - t.b, abs=1e-6) and t.low < t.difference < t.high
    for f, r in zip(forward, backward):
        assert (f.metric, f.p, f.users) == (r.metric, r.p, r.users) and (f.a, f.b) == (r.b, r.a)
        assert (f.difference, f.t, f.low, f.high) == pytest.approx((-r.difference, -r.t, -r.high, -r.low), abs=1e-15)
    shuffled = tmp_path / "shuffled.json"  # the same users in another order: matched by user id
    record = json.loads(b.read_text())
    record["users"].reverse()
    shuffled.write_text(json.dumps(record))
    assert compare.main([str(a), str(shuffled), "--json"]) == forward


def test_identical_models_are_never_significant_and_a_clearly_better_one_is(tmp_path, capsys):
    a = _write(tmp_path / "a.pt", _ranks(0))
    same = compare.main([str(a), str(_write(tmp_path / "same.json", _ranks(0)))])
    assert all(t.difference == 0 and t.t == 0 and t.p == 1 for t in same)
    better = compare.main([str(_write(tmp_path / "top.pt", torch.zeros(DATASET.num_users, dtype=torch.long))), str(a)])
    assert all(t.p < 1e-4 and t.low > 0 for t in better)  # rank 0 for every user against random ranks
    table = capsys.readouterr().out
    assert "60 users" in table and sum(line.endswith(" *") for line in table.splitlines()) == len(better)  # the paper's mark, on the second table only


def test_a_constant_difference_has_an_infinite_t_written_as_null(tmp_path, capsys):
    top, never = torch.zeros(DATASET.num_users, dtype=torch.long), torch.full((DATASET.num_users,), 99)
    tests = compare.main([str(_write(tmp_path / "a.pt", top)), str(_write(tmp_path / "b.pt", never)), "--json"])
    assert all(t.t == math.inf and t.p == 0 and t.difference > 0 for t in tests)
    printed = json.loads(capsys.readouterr().out)
    assert all(row["t"] is None for row in printed)


def _expect_usage_error(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_output_records_the_command_the_sources_and_the_tests(tmp_path, capsys):
    a, b = _write(tmp_path / "a.pt", _ranks(0)), _write(tmp_path / "b.json", _ranks(1))
    tests = compare.main([str(a), str(b), "--ks", "5,20", "--json", "--output", str(tmp_path / "ab.json")])
    record = json.loads((tmp_path / "ab.json").read_text())
    assert record["command"].endswith(f"compare.py {a} {b} --ks 5,20 --json --output {tmp_path / 'ab.json'}")
    assert (record["data"], record["split"]) == ("tiny.txt", "test")
    assert {k: (v["source"], v["split"], v["users"]) for k, v in record["files"].items()} == {
        "A": ("model a", "test", 60), "B": ("model b", "test", 60)}
    assert record["tests"] == json.loads(capsys.readouterr().out) == [dataclasses.asdict(t) for t in tests]
    assert [t["metric"] for t in record["tests"]] == ["HR@5", "HR@20", "NDCG@5", "NDCG@20"]
    assert "test" not in record  # report.py reads a results file with "test" as a run
    _expect_usage_error([str(a), str(b), "--output", str(tmp_path / "ab.txt")], "must end in .json", capsys)
    _expect_usage_error([str(a), str(b), "--output", str(tmp_path / "no" / "ab.json")], "folder does not exist", capsys)


def test_mismatched_files_are_refused(tmp_path, capsys):
    a = _write(tmp_path / "a.pt", _ranks(0))
    _expect_usage_error([str(a), str(_write(tmp_path / "v.pt", _ranks(1), split="valid"))],
                        "A ranks the test split and B the valid split", capsys)
    _expect_usage_error([str(a), str(_write(tmp_path / "o.pt", _ranks(1), data="other.txt"))],
                        "A ranks --data 'tiny.txt' and B --data 'other.txt'", capsys)
    assert compare.main([str(a), str(_write(tmp_path / "p.pt", _ranks(1), data="data/tiny.txt"))])  # a path to it
    longer = json.loads(_write(tmp_path / "c.json", _ranks(1)).read_text())
    longer["users"][5]["length"] += 1
    (tmp_path / "longer.json").write_text(json.dumps(longer))
    _expect_usage_error([str(a), str(tmp_path / "longer.json")], "other sequence lengths for 1 user(s)", capsys)
    fewer = json.loads(_write(tmp_path / "b.json", _ranks(1)).read_text())
    fewer["users"] = fewer["users"][:-3]
    (tmp_path / "fewer.json").write_text(json.dumps(fewer))
    _expect_usage_error([str(a), str(tmp_path / "fewer.json")], "3 only in A, 0 only in B", capsys)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("ranks.csv", "user,rank\n", "must end in .pt or .json"),
        ("list.json", "[1, 2]", "no 'users' list"),
        ("bools.json", {"split": "test", "users": [{"user_id": 1, "rank": True}, {"user_id": 2, "rank": 0}]},
         "users[0] 'rank' must be an integer up to 2**62, got bool True"),
        ("floats.json", {"split": "test", "users": [{"user_id": 1, "rank": 0}, {"user_id": 2, "rank": 0.5}]},
         "users[1] 'rank' must be an integer up to 2**62, got float 0.5"),
        ("missing.json", {"split": "test", "users": [{"user_id": 1}, {"user_id": 2, "rank": 0}]},
         "users[0] 'rank' must be an integer up to 2**62, got missing"),
        ("huge.json", {"split": "test", "users": [{"user_id": 2**70, "rank": 0}, {"user_id": 2, "rank": 0}]},
         "users[0] 'user_id' must be an integer up to 2**62"),
        ("usersdict.json", {"split": "test", "users": {"user_id": 1}}, "no 'users' list of objects; 'users' a dict"),
        ("negative.json", {"split": "test", "users": [{"user_id": 1, "rank": -1}, {"user_id": 2, "rank": 0}]},
         "ranks must be >= 0"),
        ("twice.json", {"split": "test", "users": [{"user_id": 1, "rank": 1}, {"user_id": 1, "rank": 0}]},
         "user id 1 appears twice"),
        ("nosplit.json", {"users": [{"user_id": 1, "rank": 1}]}, "'split' must be 'valid' or 'test'"),
        ("empty.json", {"split": "test", "users": []}, "got 0 user ids"),
        ("broken.json", "{", "not readable JSON"),
        ("source.json", {"split": "test", "source": 5, "users": [{"user_id": 1, "rank": 0}, {"user_id": 2, "rank": 0}]},
         "'source' must be a string"),
        ("tensors.pt", {"split": "test", "user_id": torch.arange(3), "rank": torch.zeros(2, dtype=torch.long)},
         "got 3 user ids and 2 ranks"),
        ("floatranks.pt", {"split": "test", "user_id": torch.arange(3), "rank": torch.zeros(3)},
         "'rank' must be a 1-D integer tensor, got a torch.float32 tensor of shape (3,)"),
        ("boolranks.pt", {"split": "test", "user_id": torch.arange(3), "rank": torch.zeros(3, dtype=torch.bool)},
         "'rank' must be a 1-D integer tensor, got a torch.bool tensor"),
        ("sparse.pt", {"split": "test", "user_id": torch.arange(3), "rank": torch.zeros(3, dtype=torch.long).to_sparse()},
         "'rank' must be a 1-D integer tensor"),
        ("hugerank.pt", {"split": "test", "user_id": torch.arange(2), "rank": torch.tensor([0, 2**63 - 1])},
         "'rank' holds a value beyond 2**62"),
        ("nouserid.pt", {"split": "test", "rank": torch.zeros(3, dtype=torch.long)}, "no 'user_id' column"),
        ("notadict.pt", [torch.arange(3)], "not a per-user file of evaluate.py --output (a list)"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, capsys, name, content, fragment):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif name.endswith(".pt"):
        torch.save(content, path)
    else:
        path.write_text(json.dumps(content))
    good = _write(tmp_path / "good.pt", _ranks(0))
    _expect_usage_error([str(path), str(good)], fragment, capsys)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/nonexistent-compare-marker"),))


def test_a_pickle_with_code_is_refused_unread(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"split": "test", "user_id": torch.arange(2), "rank": torch.zeros(2, dtype=torch.long),
                "x": _Payload()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    _expect_usage_error([str(path), str(_write(tmp_path / "good.pt", _ranks(0)))], "refused", capsys)
    _expect_usage_error([str(tmp_path), str(path)], "no such file", capsys)  # a folder


def test_one_user_and_bad_cutoffs_are_refused(tmp_path, capsys):
    one = {"split": "test", "users": [{"user_id": 1, "rank": 1}]}
    (tmp_path / "one.json").write_text(json.dumps(one))
    _expect_usage_error([str(tmp_path / "one.json")] * 2, "at least 2 users", capsys)
    a, b = _write(tmp_path / "a.pt", _ranks(0)), _write(tmp_path / "b.pt", _ranks(1))
    for ks, message in (("0", "within 1..10000"), ("5,5", "distinct"), ("10001", "within 1..10000"),
                        ("99999999999999999999", "within 1..10000"), ("x", "comma-separated integers")):
        _expect_usage_error([str(a), str(b), "--ks", ks], message, capsys)


def test_the_script_runs_from_the_command_line(tmp_path):
    a, b = _write(tmp_path / "a.pt", _ranks(0)), _write(tmp_path / "b.pt", _ranks(3))
    done = subprocess.run([sys.executable, str(EXAMPLE / "compare.py"), str(a), str(b), "--ks", "20"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[-2:]] == ["HR@20", "NDCG@20"]


def test_report_renders_the_records_as_a_table_under_their_dataset(tmp_path):
    from s4rec_example import report

    folder = tmp_path / "results" / "significance-tiny-bce"
    folder.mkdir(parents=True)
    a = _write(tmp_path / "a.pt", torch.zeros(DATASET.num_users, dtype=torch.long))
    b = _write(tmp_path / "b.pt", _ranks(1))
    tests = {t.metric: t for t in compare.main([str(a), str(b), "--output", str(folder / "ab.json")])}
    sections = report.load_significance(tmp_path / "results")
    assert list(sections) == ["tiny"]  # the dataset label of --data tiny.txt
    rows = [line for line in sections["tiny"] if line.startswith("| a recipe")]
    n, h = tests["NDCG@20"], tests["HR@20"]
    least = min(tests.values(), key=lambda t: t.p)  # the last column: the smallest p and m times it
    assert rows == [f"| a recipe, seed 0 | a recipe, seed 0 | {n.a:.4f} | {n.b:.4f} | {n.difference:+.4f} "
                    f"[{n.low:+.4f}, {n.high:+.4f}] | {n.p:.2g} \\* | {h.difference:+.4f} [{h.low:+.4f}, "
                    f"{h.high:+.4f}] | {h.p:.2g} \\* | {least.p:.2g} \\* ({least.metric}; "
                    f"{min(1.0, least.p * len(tests)):.2g}) |"]
    assert any("A: `model a`" in line for line in sections["tiny"])
    record = json.loads((folder / "ab.json").read_text())
    record["files"]["A"]["label"] = "<b>x</b> | *y*"  # a label cannot add markup or table cells
    (folder / "ab.json").write_text(json.dumps(record))
    row = next(line for line in report.load_significance(tmp_path / "results")["tiny"] if line.startswith("| &lt;b"))
    assert row.startswith("| &lt;b>x&lt;/b> \\| \\*y\\* | a recipe")
    for breaking in ({"tests": []}, {"data": "tiny.txt", "tests": [{"metric": "NDCG@20"}]}, [1]):
        (folder / "ab.json").write_text(json.dumps(breaking))
        with pytest.raises(report.common.UsageError, match="not a paired test written by compare.py"):
            report.load_significance(tmp_path / "results")
    record["tests"][-1]["p"] = float("nan")
    (folder / "ab.json").write_text(json.dumps(record))
    with pytest.raises(report.common.UsageError, match="not a finite number"):
        report.load_significance(tmp_path / "results")


def test_only_a_finished_run_names_its_results_file(tmp_path):
    from s4rec_example import report
    from s4rec_example.config import TrainConfig

    results = {"status": "running", "config": TrainConfig(preset="sasrec", data="tiny.txt").to_dict()}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert report.finished_results_name(tmp_path) is None  # a running or killed run: no file in docs/results
    (tmp_path / "results.json").write_text(json.dumps({**results, "status": "finished"}))
    assert report.finished_results_name(tmp_path) == "tiny-sasrec-bce-s0.json"
    (tmp_path / "results.json").write_text("[1]")
    assert report.finished_results_name(tmp_path) is None


@pytest.mark.parametrize("shapes", [((1,), (1,)), ((3,), (2,)), ((2, 2), (2, 2))])
def test_paired_t_test_refuses_mismatched_or_too_short_inputs(shapes):
    a, b = (torch.zeros(s, dtype=torch.float64) for s in shapes)
    with pytest.raises(ValueError, match="u >= 2"):
        compare.paired_t_test("NDCG@20", a, b)
