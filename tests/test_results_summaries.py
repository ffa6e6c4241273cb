"""The hand-written result summaries agree with the committed run files.

``report.py`` generates the per-run tables of ``docs/reproduction.md`` from
``docs/results/*.json``; the summaries a reader meets first (the README's table, the
reproduction page's Table 3 on Beauty and Table 2 on Toys and Sports) are written by hand.
These tests recompute every mean, standard deviation and seed count in them from the files
of the presets' plain runs (``<dataset>-<preset>-bce-s<seed>.json``, no ``+`` variant), so a
new seed or a replaced run cannot leave a stale figure behind.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def plain_runs(dataset: str, preset: str) -> list[dict[str, float]]:
    """Test metrics of the preset's plain runs (one per seed) on ``dataset``."""
    pattern = re.compile(rf"{re.escape(dataset)}-{re.escape(preset)}-bce-s\d+\.json")
    files = sorted(path for path in RESULTS.glob("*.json") if pattern.fullmatch(path.name))
    return [json.loads(path.read_text())["test"] for path in files]


def summary(values: list[float]) -> tuple[str, str | None]:
    """``(mean, sample std)`` formatted to four places as the pages write them (std None for one run)."""
    std = f"{statistics.stdev(values):.4f}" if len(values) > 1 else None
    return f"{statistics.mean(values):.4f}", std


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


def figure(cell: str) -> str:
    """The first four-place figure of a cell, bold and footnote marks aside."""
    match = re.search(r"\d\.\d{4}", cell)
    assert match is not None, f"no figure in {cell!r}"
    return match.group(0)


def std_in(cell: str) -> str | None:
    match = re.search(r"± (\d\.\d{4})", cell)
    return match.group(1) if match else None


REPRODUCTION = (ROOT / "docs" / "reproduction.md").read_text()
TABLE3 = table_after(REPRODUCTION, "**Table 3 on Beauty**")
TABLE2 = [row for row in table_after(REPRODUCTION, "**Table 2 on Toys and Sports**") if "at 256" not in row[1]]


def test_the_summary_tables_were_found():
    """The parsers below read real rows (a renamed heading would otherwise pass them vacuously)."""
    assert len([row for row in TABLE3 if row[2] != "-"]) == 6
    assert {row[0] for row in TABLE2} == {"Toys", "Sports"} and len(TABLE2) >= 10


@pytest.mark.parametrize("row", [row for row in TABLE3 if row[2] != "-"], ids=lambda row: preset_of(row[1]))
def test_table3_on_beauty_matches_the_run_files(row):
    runs = plain_runs("Beauty", preset_of(row[1]))
    assert int(row[2]) == len(runs), "seed count"
    mean, std = summary([run["NDCG@20"] for run in runs])
    assert (figure(row[3]), std_in(row[3])) == (mean, std), "test NDCG@20"
    assert figure(row[7]) == summary([run["HR@20"] for run in runs])[0], "test HR@20"
    hr_std = std_in(row[7])
    assert hr_std is None or hr_std == summary([run["HR@20"] for run in runs])[1], "HR@20 std"


@pytest.mark.parametrize("row", TABLE2, ids=lambda row: f"{row[0]}-{preset_of(row[1])}")
def test_table2_on_toys_and_sports_matches_the_run_files(row):
    runs = plain_runs(row[0], preset_of(row[1]))
    assert seeds_in(row[1]) == len(runs), "seed count"
    for column, metric in zip(row[2:6], ("HR@5", "HR@20", "NDCG@5", "NDCG@20")):
        mean, std = summary([run[metric] for run in runs])
        assert figure(column) == mean, metric
        assert std_in(column) in (None, std), f"{metric} std"


README_ROWS = table_after((ROOT / "README.md").read_text(), "| dataset | `sasrec` here / paper")


@pytest.mark.parametrize("row", README_ROWS, ids=lambda row: row[0])
def test_the_readme_table_matches_the_run_files(row):
    assert len(README_ROWS) == 3
    for cell, preset in zip(row[1:4], ("sasrec", "iclrec", "s4rec")):
        runs = plain_runs(row[0], preset)
        assert seeds_in(cell) == len(runs), f"{preset}: seed count"
        assert figure(cell) == summary([run["NDCG@20"] for run in runs])[0], f"{preset}: NDCG@20"
