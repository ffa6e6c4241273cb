"""The hand-written result summaries agree with the committed run files.

``report.py`` generates the per-run tables of ``docs/reproduction.md`` from
``docs/results/*.json``; the summaries a reader meets first (the README's table, the
reproduction page's "In short" table, Table 3 on Beauty and Table 2 on Toys and Sports) are
written by hand.
These tests recompute every mean, standard deviation and seed count in them from the presets'
plain runs (no setting off the preset), grouped and formatted as ``report.py`` groups and
formats its own rows, so a new seed or a replaced run cannot leave a stale figure behind.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "s4rec"))

from s4rec_example import report  # noqa: E402

RUNS = report.load_results(ROOT / "docs" / "results")


def plain_runs(dataset: str, preset: str) -> list[dict[str, float]]:
    """Test metrics of the preset's bce runs with no setting off the preset (one per seed), the
    members of ``report.py``'s plain row for it."""
    return [r["test"] for r in RUNS if report._dataset(r) == dataset and r["config"]["preset"] == preset
            and report.is_plain(r)]


def stated(cell: str) -> str:
    """The figure a cell states, ``"0.0486 ± 0.0014"`` or ``"0.0486"``, bold and footnotes aside."""
    match = re.search(r"\d\.\d{4}(?: ± \d\.\d{4})?", cell)
    assert match is not None, f"no figure in {cell!r}"
    return match.group(0)


def agrees(cell: str, values: list[float]) -> bool:
    """The cell states ``report.py``'s mean ± std of ``values``, or its mean alone."""
    expected = report._mean_std(values)
    return stated(cell) in (expected, expected.split(" ± ")[0])


def table_after(text: str, marker: str) -> list[list[str]]:
    """Cells of the first Markdown table after ``marker`` (header and rule dropped)."""
    lines = text[text.index(marker):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def preset_of(cell: str) -> str:
    match = re.search(r"`([^`]+)`", cell)
    assert match is not None, f"no preset in {cell!r}"
    return match.group(1)


def seeds_in(cell: str) -> int:
    """The seed count a cell states: "(3 seeds", "(2 seeds;" or one seed when it names none."""
    match = re.search(r"\((\d+) seeds", cell)
    return int(match.group(1)) if match else 1


REPRODUCTION = (ROOT / "docs" / "reproduction.md").read_text()
TABLE3 = table_after(REPRODUCTION, "**Table 3 on Beauty**")
README_ROWS = table_after((ROOT / "README.md").read_text(), "| dataset | `sasrec` here / paper")
TABLE2 = [row for row in table_after(REPRODUCTION, "**Table 2 on Toys and Sports**") if "at 256" not in row[1]]
IN_SHORT = table_after(REPRODUCTION, "## In short")
PAPER_FILE = ROOT.parent / "shared" / "paper" / "results.json"


def test_the_summary_tables_were_found():
    """The parsers below read real rows (a renamed heading would otherwise pass them vacuously)."""
    assert len([row for row in TABLE3 if row[2] != "-"]) == 6
    assert {row[0] for row in TABLE2} == {"Toys", "Sports"} and len(TABLE2) >= 10
    assert [row[0] for row in README_ROWS] == ["Beauty", "Toys", "Sports"]
    assert [row[0] for row in IN_SHORT].count("Beauty") == 4 and len(IN_SHORT) == 10


@pytest.mark.parametrize("row", [row for row in TABLE3 if row[2] != "-"], ids=lambda row: preset_of(row[1]))
def test_table3_on_beauty_matches_the_run_files(row):
    runs = plain_runs("Beauty", preset_of(row[1]))
    assert int(row[2]) == len(runs), "seed count"
    assert stated(row[3]) == report._mean_std([run["NDCG@20"] for run in runs]), "test NDCG@20 (mean ± std)"
    assert agrees(row[7], [run["HR@20"] for run in runs]), "test HR@20"


@pytest.mark.parametrize("row", TABLE2, ids=lambda row: f"{row[0]}-{preset_of(row[1])}")
def test_table2_on_toys_and_sports_matches_the_run_files(row):
    runs = plain_runs(row[0], preset_of(row[1]))
    assert seeds_in(row[1]) == len(runs), "seed count"
    for column, metric in zip(row[2:6], ("HR@5", "HR@20", "NDCG@5", "NDCG@20")):
        assert agrees(column, [run[metric] for run in runs]), metric


@pytest.mark.parametrize("row", README_ROWS, ids=lambda row: row[0])
def test_the_readme_table_matches_the_run_files(row):
    for cell, preset in zip(row[1:4], ("sasrec", "iclrec", "s4rec")):
        runs = plain_runs(row[0], preset)
        assert seeds_in(cell) == len(runs), f"{preset}: seed count"
        assert stated(cell) == report._mean_std([run["NDCG@20"] for run in runs]).split(" ± ")[0], f"{preset}: NDCG@20"


@pytest.mark.parametrize("row", IN_SHORT, ids=lambda row: f"{row[0]}-{preset_of(row[1])}")
def test_the_reproduction_pages_summary_matches_the_run_files_and_the_paper(row):
    runs = plain_runs(row[0], preset_of(row[1]))
    assert int(row[2]) == len(runs), "seed count"
    assert stated(row[3]) == report._mean_std([run["NDCG@20"] for run in runs]), "test NDCG@20"
    assert stated(row[4]) == report._mean_std([run["HR@20"] for run in runs]), "test HR@20"
    if not PAPER_FILE.is_file():
        pytest.skip(f"the paper's tables are not at {PAPER_FILE}")
    paper = report.paper_row(report.common.read_json(PAPER_FILE, "--paper"), row[0], preset_of(row[1]))
    assert paper is not None and (row[5], row[6]) == (f"{paper[3]:.4f}", f"{paper[1]:.4f}"), "the paper's row"
