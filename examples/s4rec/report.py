"""Tabulate finished runs beside the paper's numbers (Markdown, for docs/reproduction.md).

Example:
    python examples/s4rec/report.py runs/*/results.json --paper ../shared/paper/results.json

Every row comes from a ``results.json`` written by ``train.py``: dataset, preset, loss, seed,
epochs run (and the cap), best epoch, test HR@5/20 and NDCG@5/20, wall time and machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")
PAPER_ROWS = {  # preset -> (table, row) in the paper's results.json
    "sasrec": ("table2", "SASRec"),
    "cl4srec": ("table2", "CL4SRec"),
    "s4rec": ("table2", "S4Rec"),
    "sr+csd": ("table3_beauty_ablation", "SR+CSD"),
    "sr+csd+gr": ("table3_beauty_ablation", "SR+CSD+GR"),
    "s4rec-no-csd": ("table3_beauty_ablation", "S4Rec w/o CSD"),
    "s4rec-no-gr": ("table3_beauty_ablation", "S4Rec w/o GR"),
}
DATASET_NAMES = {"Beauty": "Beauty", "Sports_and_Outdoors": "Sports", "Toys_and_Games": "Toys", "ml-1m": "ML-1M"}


def dataset_name(config: dict) -> str:
    data = config.get("data")
    if not data:
        return "generated"
    stem = Path(data).stem
    return DATASET_NAMES.get(stem, stem)


def paper_row(paper: dict, dataset: str, preset: str) -> list[float] | None:
    if preset not in PAPER_ROWS:
        return None
    table, row = PAPER_ROWS[preset]
    if table == "table2":
        return paper["table2"].get(dataset, {}).get(row)
    return paper[table].get(row) if dataset == "Beauty" else None


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="results.json files (or run folders)")
    p.add_argument("--paper", default=None, help="the paper's results.json, for side-by-side numbers")
    args = p.parse_args(argv)
    paper = json.loads(Path(args.paper).read_text()) if args.paper else None
    header = ("| dataset | preset | loss | seed | pooling | tau2 | epochs (cap) | best | "
              + " | ".join(METRICS) + " | paper " + " / ".join(METRICS) + " | s/epoch | wall | machine |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    rows = []
    for item in args.results:
        path = Path(item)
        path = path / "results.json" if path.is_dir() else path
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        c = r["config"]
        rows.append((dataset_name(c), c["preset"], c["loss"], c["seed"], c.get("pooling", ""), r))
    for dataset, preset, loss, seed, pooling, r in sorted(rows, key=lambda x: (*x[:5], x[5]["config"]["cl_temperature"])):
        c = r["config"]
        ref = paper_row(paper, dataset, preset) if paper and loss == "bce" else None  # paper: BCE only
        tau2 = f"{c['cl_temperature']:g}" if c["beta1"] > 0 else "-"
        if preset == "sasrec":
            pooling = "-"  # no self-supervised head uses z_u
        ref_text = " / ".join(f"{v:.4f}" for v in ref) if ref else "-"
        wall = r.get("total_seconds", 0.0) / 60
        lines.append(
            f"| {dataset} | {preset} | {loss} | {seed} | {pooling} | {tau2} | {r['epochs_run']} ({c.get('epochs')}) | "
            f"{r['best_epoch']} | " + " | ".join(f"{r['test'][m]:.4f}" for m in METRICS)
            + f" | {ref_text} | {r['seconds_per_epoch']:.1f} | {wall:.0f} min | {r.get('machine', '?')} |"
        )
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
