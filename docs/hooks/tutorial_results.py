"""MkDocs hook: the tutorial's Beauty table is generated from the committed result files.

``docs/tutorial-results/<dataset>-<encoder>-<plain|pieces>-s<seed>.json`` are the files that
``examples/gru4rec/train.py --output`` writes (config, command, git commit, valid curve, test
metrics). The marker ``<!-- tutorial-results -->`` on ``tutorial.md`` becomes one row per file
plus the mean over seeds per configuration; with no files it says "not yet measured", so the
page can never show a number that no run produced.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

MARKER = "<!-- tutorial-results -->"
KEYS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")


def commit(value: str | None) -> str:
    """Short commit; ``+dirty`` marks a library with uncommitted changes at run time."""
    if not value:
        return "-"
    head, dirty, _ = value.partition("+dirty")
    return f"`{head[:8]}`" + (" (dirty)" if dirty else "")


def results_table(folder: Path) -> str:
    files = sorted(folder.glob("*.json"))
    if not files:
        return (
            "!!! warning \"Not yet measured\"\n"
            "    No run of the tutorial has finished yet (there is no file in\n"
            "    `docs/tutorial-results/`). Run the commands above; this table is generated\n"
            "    from the files they write.\n"
        )
    rows: list[tuple[str, int, dict[str, Any]]] = []
    for path in files:
        record = json.loads(path.read_text())
        record["_file"] = path.name
        config = record["config"]
        data = Path(config["data"]).stem if config.get("data") else "generated"
        run = "GRU4Rec" if config["encoder"] == "gru" else "own Transformer"
        name = f"{data}: {run} + pieces" if config["pieces"] else f"{data}: {run} alone"
        name += f", at most {config['epochs']} epochs"
        rows.append((name, int(config["seed"]), record))
    header = "| run | seed | " + " | ".join(KEYS) + " | best epoch / run | seconds | commit | file |"
    lines = [header, "|" + "---|" * (len(KEYS) + 6)]
    for name, seed, record in sorted(rows, key=lambda r: (r[0], r[1])):
        test = record["test"]
        cells = " | ".join(f"{test[k]:.4f}" for k in KEYS)
        budget = " †" if record.get("stopped_by") == "time_budget" else ""
        lines.append(
            f"| {name} | {seed} | {cells} | {record['best_epoch']} / {record['epochs_run']}{budget} "
            f"| {record.get('seconds', '-')} | {commit(record.get('git_commit'))} "
            f"| [json](tutorial-results/{record['_file']}) |"
        )
    if any(r[2].get("stopped_by") == "time_budget" for r in rows):
        lines.append("")
        lines.append("† stopped by its time budget (`--max-minutes`) while still improving: the "
                     "best epoch so far was tested, so the row understates what the run would reach.")
    lines.append("")
    lines.append("Mean (and standard deviation) over the seeds that have finished:")
    lines.append("")
    lines.append("| run | seeds | " + " | ".join(KEYS) + " |")
    lines.append("|" + "---|" * (len(KEYS) + 2))
    for name in sorted({r[0] for r in rows}):
        tests = [r[2]["test"] for r in rows if r[0] == name]
        cells = []
        for k in KEYS:
            values = [t[k] for t in tests]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.4f}{spread}")
        lines.append(f"| {name} | {len(tests)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    folder = Path(config["docs_dir"]) / "tutorial-results"
    return markdown.replace(MARKER, results_table(folder))
