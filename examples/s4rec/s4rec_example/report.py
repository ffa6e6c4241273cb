"""Regenerate the result tables of docs/reproduction.md and the training curves from docs/results/*.json.

Every ``docs/results/<dataset>-<preset>-<loss>-s<seed>.json`` is the ``results.json`` of one
finished run (no checkpoints). The tables are written between the markers
``<!-- results:begin -->`` and ``<!-- results:end -->`` of the page; the curves (valid NDCG@20
per epoch, one thin line per run and a thick line for each preset's seed mean, one colour per
preset) go to ``docs/img/curves-<dataset>-<loss>.png``.

Runs that differ from the ``s4rec`` preset in one setting of the paper's grids (a loss weight, a
temperature, K) get a table per dataset and a figure ``docs/img/params-<dataset>-<loss>.png``
(the paper's Figure 6; see ``sensitivity.py``).

A head/tail study written by ``headtail.py --output docs/results/headtail-<dataset>-<loss>``
(its ``headtail.json`` and two figures, in a folder) gets a table and its figures under its
dataset's runs, and so do the paired t-tests that ``compare.py --output
docs/results/significance-<dataset>-<loss>/<name>.json`` records (the paper's "*").

Example:
    python examples/s4rec/report.py                 # rewrite the page and the figures
    python examples/s4rec/report.py --check         # exit 1 if the page is out of date
    python examples/s4rec/report.py --add runs/Beauty-s4rec-bce-s0   # copy a run's results.json in
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import cli_common as common
from .sensitivity import draw_sensitivity, grid_points, render_sensitivity, settings_diff

__all__ = ["BEGIN", "END", "add_run", "load_results", "load_studies", "main", "render_tables", "results_name",
           "stopped_by"]

LOG = logging.getLogger("s4rec.report")
ROOT = Path(__file__).resolve().parents[3]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")
PRESET_ORDER = ("sasrec", "cl4srec", "iclrec", "sr+csd", "sr+csd+gr", "s4rec-no-csd", "s4rec-no-gr", "s4rec")
PAPER_ROWS = {  # preset -> (table, row) in the paper's results.json
    "sasrec": ("table2", "SASRec"),
    "cl4srec": ("table2", "CL4SRec"),
    "iclrec": ("table2", "ICLRec"),
    "s4rec": ("table2", "S4Rec"),
    "sr+csd": ("table3_beauty_ablation", "SR+CSD"),
    "sr+csd+gr": ("table3_beauty_ablation", "SR+CSD+GR"),
    "s4rec-no-csd": ("table3_beauty_ablation", "S4Rec w/o CSD"),
    "s4rec-no-gr": ("table3_beauty_ablation", "S4Rec w/o GR"),
}
DATASET_ORDER = ("Beauty", "Sports", "Toys", "ML-1M")


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.,+=@-]*\.json")
_MAX_NAME = 240  # file systems allow 255 bytes a name
_CODE_BREAKERS = ("`", "\n", "\r", BEGIN[:4], "-->")
# a collapsed block whose Markdown (run lists, tables) mkdocs renders: needs the md_in_html extension
_DETAILS = '<details markdown="1">'


def _code(value: object) -> str:
    """``value`` for a markdown code span: a string on one line with no backtick and no HTML comment
    marker (either would end the span, or the page's generated section); ``ValueError`` otherwise."""
    if not isinstance(value, str) or any(b in value for b in _CODE_BREAKERS):
        raise ValueError(f"{str(value)[:60]!r} must be a string on one line, without backticks or HTML comments")
    return value


# characters that start inline markup, math ($, pymdownx.arithmatex) or a {{ }} substitution, or end a table cell
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]|${}])")
_MARKDOWN_BLOCK = re.compile(r"^([#>+-]|\d+(?=\.))")  # a heading, quote or list item at a line's start


def _prose(value: object) -> str:
    """``value`` as one line of markdown text that renders as the text it is: HTML and markdown
    escaped, so that a note cannot add markup, links or table cells, or end the page's generated
    section."""
    text = " ".join(str(value).split()).replace("&", "&amp;").replace("<", "&lt;")
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)
    return _MARKDOWN_BLOCK.sub(lambda m: m[1] + "\\" if m[1][0].isdigit() else "\\" + m[1], text)


def results_name(results: dict[str, Any]) -> str:
    """``<dataset>-<preset>-<loss>-s<seed>.json`` of a run (``+key-value`` for each setting off its preset).

    Raises:
        ValueError: if a part would make the name leave its folder or hold odd characters.
    """
    from .data import dataset_label

    c = results["config"]
    variant = "".join(f"+{part.replace('=', '-')}" for part in _variant(results).split(", ") if part)
    name = f"{dataset_label(c.get('data'))}-{c['preset']}-{c['loss']}-s{c['seed']}{variant}.json"
    if not _SAFE_NAME.fullmatch(name) or ".." in name or len(name) > _MAX_NAME:
        raise ValueError(f"the results file name {name[:80]!r} would hold a path or odd characters, or be "
                         f"longer than {_MAX_NAME} characters")
    return name


def run_label(config_dict: dict[str, Any]) -> str:
    """``preset`` or ``preset (settings off the preset)``: how the tables name a run's recipe."""
    variant = _variant({"config": config_dict})
    return f"{config_dict['preset']} ({variant})" if variant else str(config_dict["preset"])


def finished_results_name(run_dir: Path) -> str | None:
    """The name ``--add`` gives the run in ``run_dir`` in docs/results, when it has a finished
    run's results.json (a running or killed run's file names no file in docs/results)."""
    finished = run_dir / "results.json"
    if not finished.is_file():
        return None
    try:
        results = json.loads(finished.read_text())
        return results_name(results) if results.get("status") == "finished" else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def _finite_metrics(value: object, key: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and common.is_finite_number(v) for k, v in value.items()):
        raise ValueError(f"{key} must map metric names to finite numbers")


def check_results(results: object, source: str) -> dict[str, Any]:
    """A finished run's results.json as report.py reads it, or one ``UsageError`` naming ``source``:
    every field the page shows is checked, so that no file can break a later report (or the page)."""
    from .cli import check_config
    from .config import TrainConfig
    from .loop import STOP_REASONS

    try:
        if not isinstance(results, dict):
            raise ValueError(f"expected a JSON object, found {type(results).__name__}")
        if results.get("status") != "finished":
            raise ValueError("the run is not finished")
        config = results.get("config")
        if not isinstance(config, dict):
            raise ValueError("config must be a JSON object")
        TrainConfig.from_dict(config)  # every setting known and in range
        _finite_metrics(results.get("test"), "test")
        for key in METRICS:
            if key not in results["test"]:
                raise ValueError(f"test has no {key}")
        _finite_metrics(results.get("valid"), "valid")
        history = results.get("history")
        if not isinstance(history, list) or not all(
            isinstance(h, dict) and isinstance(h.get("epoch"), int) for h in history
        ):
            raise ValueError("history must be a list of epochs, each with an int epoch")
        for h in history:
            if "valid" in h:
                _finite_metrics(h["valid"], "history valid")
        for key in ("best_epoch", "epochs_run"):
            if not isinstance(results.get(key), int) or isinstance(results.get(key), bool):
                raise ValueError(f"{key} must be an int")
        for key in ("seconds_per_epoch", "total_seconds"):
            if not common.is_finite_number(results.get(key)):
                raise ValueError(f"{key} must be a finite number")
        cap = results.get("epoch_cap")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError("epoch_cap must be an int >= 1 when present")
        if results.get("stopped_by") not in (None, *STOP_REASONS):
            raise ValueError(f"stopped_by must be one of {', '.join(STOP_REASONS)} or null")
        for h in history:
            if "valid" in h and not set(METRICS) <= set(h["valid"]):
                raise ValueError(f"the valid metrics of epoch {h['epoch']} lack one of {', '.join(METRICS)}")
        check_config(TrainConfig.from_dict(config))  # the ranges the flags enforce
        for key in ("command", "machine", "git_commit"):
            if key in results:
                _code(results[key])
        resumes = results.get("resumes", [])
        for r in resumes if isinstance(resumes, list) else [None]:
            if not isinstance(r, dict) or type(r.get("after_epochs")) is not int:  # bool is not an int here
                raise ValueError("resumes must be a list of objects, each with an int after_epochs")
            _code(r.get("git_commit", "?"))
        if not isinstance(results.get("note", ""), str):
            raise ValueError("note must be a string")
        results_name(results)
    except (common.UsageError, TypeError, ValueError, AttributeError, KeyError) as err:  # UsageError: check_config's
        raise common.UsageError(f"{source}: not a finished run's results.json ({err})") from None
    return results


def add_run(run: Path, results_dir: Path) -> Path:
    """Copy a finished run's results.json into ``results_dir`` under its canonical name,
    after checking everything report.py reads from it."""
    from .checkpoint import atomic_write_text

    path = run / "results.json" if run.is_dir() else run
    if not path.is_file():
        raise common.UsageError(f"--add {run}: no results.json")
    results = check_results(common.read_json(path, "--add"), f"--add {path}")
    target = results_dir / results_name(results)
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(results, indent=1) + "\n")
    return target


def _check_regular(path: Path) -> None:
    """A results folder holds regular files: a pipe would block the read for ever."""
    if not path.is_file():
        raise common.UsageError(f"{path}: not a regular file (a folder, a pipe or a dangling link)")


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(results_dir.glob("*.json")):
        _check_regular(path)
        r = common.read_json(path, "--results-dir")
        if isinstance(r, dict) and r.get("test") is None:
            continue  # not a run (a benchmark's file)
        r = check_results(r, str(path))
        r["_file"] = path.name
        runs.append(r)
    return runs


_FIGURES = (("head_rate_boxplot.png", "head rate per cluster"), ("headtail_metrics.png", "head/tail metrics"))


def load_studies(results_dir: Path, href: str) -> dict[str, list[str]]:
    """Dataset -> the markdown of its head/tail studies in ``results_dir`` (``headtail-*/headtail.json``,
    figures linked under ``href``). A file that is not JSON or not shaped as headtail.py writes it
    is one ``UsageError`` naming it."""
    from .data import dataset_label

    studies: dict[str, list[str]] = defaultdict(list)
    for path in sorted(results_dir.glob("headtail-*/headtail.json")):
        _check_regular(path)
        figures = tuple(name for name, _ in _FIGURES if (path.parent / name).is_file())
        try:
            study = json.loads(path.read_text())
            if not isinstance(study, dict) or not study.get("runs") or not study.get("summary"):
                raise ValueError("no runs or summary")
            lines = render_study(path.parent.name, study, href, figures)
            dataset = dataset_label(study["runs"][0].get("data"))
        except (ValueError, KeyError, IndexError, AttributeError, TypeError, OverflowError) as error:
            raise common.UsageError(f"{path}: not a head/tail study written by headtail.py ({error!r})") from None
        studies[dataset] += lines
    return studies


def load_significance(results_dir: Path) -> dict[str, list[str]]:
    """Dataset -> the markdown table of the paired t-tests in ``results_dir``
    (``significance-*/*.json``, written by ``compare.py --output``); a file not shaped as
    compare.py writes it is one ``UsageError`` naming it."""
    from .data import dataset_label

    rows: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for path in sorted(results_dir.glob("significance-*/*.json")):
        _check_regular(path)
        record = common.read_json(path, "--results-dir")
        try:
            if not isinstance(record, dict):
                raise ValueError("not an object")
            rows[dataset_label(str(record["data"]))].append((significance_row(path.name, record)))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise common.UsageError(f"{path}: not a paired test written by compare.py --output ({error!r})") from None
    out: dict[str, list[str]] = {}
    for dataset, entries in rows.items():
        out[dataset] = [
            "#### Paired t-tests over users (the paper's significance test)", "",
            "Two trained models ranked on the same users (`compare.py`; the test split unless named): the mean "
            "per-user difference A - B with its 95% interval, and the two-sided p of the paired t-test that the "
            "paper's \"\\*\" (p < 0.01, also marked here) rests on. The users are the sample and each model is one "
            "trained checkpoint: the test says nothing about the spread over seeds. The last column is the smallest p "
            "over every metric the record tests (HR and NDCG at each cut-off), then that p multiplied by the number of "
            "metrics (Holm's adjustment of the smallest of m p-values): a pair of models compared on several metrics "
            "will show a small p on one of them by chance alone more often than one test would.", "",
            "| A | B | NDCG@20 A | NDCG@20 B | NDCG@20 A - B (95% interval) | p | HR@20 A - B (95% interval) | p "
            "| smallest p (metric; Holm) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            *(row for row, _ in entries), "",
            f"{_DETAILS}<summary>The tests' files and commands</summary>", "",
            *(line for _, lines in entries for line in lines), "", "</details>", "",
        ]
    return out


def significance_row(name: str, record: dict[str, Any]) -> tuple[str, list[str]]:
    """One ``compare.py`` record: its table row (NDCG@20, HR@20, the smallest p over its metrics and
    that p times their number, Holm's adjustment for the smallest) and its lines under "files and
    commands"; ``ValueError`` (or ``KeyError``/``TypeError``) when it is not shaped as compare.py writes it."""
    tests = {t["metric"]: t for t in record["tests"]}
    for t in tests.values():  # every p feeds the last column
        if not common.is_finite_number(t["p"]):
            raise ValueError(f"{t['metric']}: a value is not a finite number")

    def cells(metric: str) -> str:
        t = tests[metric]
        if not all(common.is_finite_number(t[k]) for k in ("a", "b", "difference", "low", "high")):
            raise ValueError(f"{metric}: a value is not a finite number")
        mark = " \\*" if t["p"] < 0.01 else ""
        return f"{t['difference']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}] | {t['p']:.2g}{mark}"

    ndcg, hr = cells("NDCG@20"), cells("HR@20")
    least = min(tests.values(), key=lambda t: t["p"])
    holm = min(1.0, least["p"] * len(tests))
    star = " \\*" if least["p"] < 0.01 else ""
    smallest = f"{least['p']:.2g}{star} ({_prose(least['metric'])}; {holm:.2g})"
    files = [record["files"][key] for key in ("A", "B")]
    a, b = (_prose(f.get("label") or f["source"] or "?") for f in files)
    split = "" if record.get("split") == "test" else f" ({_prose(record.get('split'))} split)"
    row = f"| {a}{split} | {b} | {tests['NDCG@20']['a']:.4f} | {tests['NDCG@20']['b']:.4f} | {ndcg} | {hr} | {smallest} |"
    lines = [f"- `{_code(name)}`, commit `{_short(_code(record.get('git_commit', '?')))}`:  "]
    for key, f in zip("AB", files):
        run = f" (run file `{_code(f['results_file'])}`)" if f.get("results_file") else ""
        lines.append(f"  {key}: `{_code(str(f['source']))}`{run}  ")
    lines.append(f"  `{_code(record.get('command', '?'))}`")
    return row, lines


def render_study(folder: str, study: dict[str, Any], href: str, figures: tuple[str, ...]) -> list[str]:
    """Markdown lines for one head/tail study: its table (mean over seeds) and the ``figures`` present."""
    runs = study["runs"]
    first = runs[0]["metrics"]
    share = next((r["head_rate"]["overall_head_share"] for r in runs if "head_rate" in r), None)
    out = [f"#### Head and tail users (Section 5.3, Figures 3 and 4): `{folder}`", "",
           f"Head users: training sequence longer than the {runs[0].get('head_quantile', 0.8)} quantile of training "
           f"lengths ({first['num_head']} of {first['num_head'] + first['num_tail']} users"
           + (f", {share:.1%}" if share is not None else "") + "). Test split, best valid checkpoint; mean over seeds. "
           "Head-rate IQR: the spread of the clusters' head shares (Fig. 3's boxes); I(cluster; head): the "
           "mutual information between a user's cluster and their head/tail flag (0 = head users spread "
           "evenly over the clusters).", "",
           "| run | seeds | NDCG@20 head | NDCG@20 tail | NDCG@20 all | HR@20 head | HR@20 tail | head-rate IQR | "
           "I(cluster; head), nats |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(entry: dict[str, Any] | None) -> str:
        if entry is None:
            return "-"
        return f"{entry['mean']:.4f}" + (f" ± {entry['std']:.4f}" if entry["std"] else "")

    for e in study["summary"]:
        out.append(f"| {_prose(e['label'])} | {len(e['seeds'])} | {cell(e['head']['NDCG@20'])} | {cell(e['tail']['NDCG@20'])} | "
                   f"{cell(e['all']['NDCG@20'])} | {cell(e['head']['HR@20'])} | {cell(e['tail']['HR@20'])} | "
                   f"{cell(e.get('iqr'))} | {cell(e.get('length_information'))} |")
    out.append("")
    for name, alt in _FIGURES:
        if name in figures:
            out += [f"![{alt}, {folder}]({href}/{folder}/{name})", ""]
    files = ", ".join(f"`{_code(r.get('results_file', r['run']))}`" for r in runs)
    out += [f"{_DETAILS}<summary>The study's runs, commit and command</summary>", "",
            f"Runs: {files}.  ",
            f"Commit `{_short(_code(study.get('git_commit', '?')))}`, {_prose(study.get('machine', '?'))}:  ",
            f"`{_code(study.get('command', '?'))}`", "", "</details>", ""]
    return out


def _dataset(r: dict[str, Any]) -> str:
    from .data import dataset_label

    return dataset_label(r["config"].get("data"))


def stopped_by(r: dict[str, Any]) -> str:
    """``early_stopping``, ``max_epochs`` or ``time_budget`` (files written before the field existed:
    inferred from ``stopped_early``)."""
    if r.get("stopped_by"):
        return str(r["stopped_by"])
    return "early_stopping" if r.get("stopped_early") else "max_epochs"


def _last_epoch(r: dict[str, Any]) -> int:
    return int(r["history"][-1]["epoch"]) if r.get("history") else int(r.get("epochs_run", 0)) - 1


def _best_cell(r: dict[str, Any]) -> str:
    """The best epoch; a run cut by the time budget is marked (it did not converge)."""
    if stopped_by(r) == "time_budget":
        return f"{r['best_epoch']} †{_last_epoch(r)}"
    return str(r["best_epoch"])


def _cap(r: dict[str, Any]) -> int:
    """A run's epoch cap as it ran. Runs recorded before ``"epoch_cap"`` existed (2026-12-05) ran
    with 300 on real data whatever the batch, and 20 on generated data."""
    c = r["config"]
    return int(r.get("epoch_cap") or c.get("epochs") or (300 if c.get("data") else 20))


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _order(preset: str) -> int:
    return PRESET_ORDER.index(preset) if preset in PRESET_ORDER else len(PRESET_ORDER)


def _variant(r: dict[str, Any]) -> str:
    """A run's settings that differ from its preset's (so different recipes are not averaged)."""
    return ", ".join(f"{k}={v}" for k, v in settings_diff(r, r["config"]["preset"]).items())


def is_plain(r: dict[str, Any]) -> bool:
    """A ``bce`` run at its preset's settings: a member of the preset's own row, the rows that
    the paper's tables are compared with."""
    return bool(r["config"]["loss"] == "bce" and not _variant(r))


def paper_row(paper: dict[str, Any] | None, dataset: str, preset: str) -> list[float] | None:
    if paper is None or preset not in PAPER_ROWS:
        return None
    table, row = PAPER_ROWS[preset]
    try:
        if table == "table2":
            values = paper["table2"].get(dataset, {}).get(row)
        else:
            values = paper[table].get(row) if dataset == "Beauty" else None
        return None if values is None else [float(v) for v in values]
    except (KeyError, AttributeError, TypeError, ValueError) as err:
        raise common.UsageError(f"--paper: not shaped as the paper's results.json ({type(err).__name__}: "
                                f"{str(err)[:120]} at {table} / {dataset} / {row})") from None


def render_tables(runs: list[dict[str, Any]], paper: dict[str, Any] | None, img_names: dict[str, str],
                  studies: dict[str, list[str]] | None = None) -> str:
    """Markdown: per dataset, one row per (preset, loss, variant): mean ± std over seeds, then details,
    then the dataset's extra sections (``studies``: markdown lines per dataset, e.g. the
    one-setting analysis of :mod:`.sensitivity` and the head/tail studies of :func:`load_studies`)."""
    groups: dict[str, dict[tuple[str, str, str], list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        c = r["config"]
        groups[_dataset(r)][(c["preset"], c["loss"], _variant(r))].append(r)
    out = ["_Generated by `python examples/s4rec/report.py` from `docs/results/*.json`; do not edit by hand._", ""]
    if not runs:
        return out[0] + " _No run has been copied into `docs/results/` yet._\n"
    datasets = sorted(groups, key=lambda d: (DATASET_ORDER.index(d) if d in DATASET_ORDER else 99, d))
    for dataset in datasets:
        out += [f"### {dataset}", "", "| preset | loss | seeds | " + " | ".join(f"test {m}" for m in METRICS)
                + " | best epoch |", "|---|---|---|" + "---:|" * (len(METRICS) + 1)]
        rows = sorted(groups[dataset].items(), key=lambda kv: (_order(kv[0][0]), kv[0][1], kv[0][2]))
        for (preset, loss, variant), members in rows:
            name = f"`{preset}`" + (f" ({variant})" if variant else "")
            cells = [_mean_std([m["test"][k] for m in members]) for k in METRICS]
            best = ", ".join(_best_cell(m) for m in members)
            out.append(f"| {name} | {loss} | {len(members)} | " + " | ".join(cells) + f" | {best} |")
        out.append("")
        if any(stopped_by(m) == "time_budget" for _, members in rows for m in members):
            out += ["† N: stopped at epoch N by the time budget (`--max-minutes`), not converged: the run "
                    "was tested with its best checkpoint so far, so its row understates what the recipe reaches. "
                    "Where the cut epoch was validated, its entry under \"Every run\" gives the flags that "
                    "repeat the run without a clock.",
                    ""]
        for loss_img in sorted(k for k in img_names if k.startswith(dataset + "-")):
            out += [f"![valid NDCG@20 per epoch, {loss_img}](img/{img_names[loss_img]})", ""]
        paper_lines = []
        bce_presets = sorted({preset for (preset, loss, _), _ in rows if loss == "bce"}, key=_order)
        for preset in bce_presets:  # a preset measured only as a variant still shows the paper's row
            ref = paper_row(paper, dataset, preset)
            if ref:
                paper_lines.append(f"| `{preset}` | " + " | ".join(f"{v:.4f}" for v in ref) + " |")
        if paper_lines:
            out += [f"{_DETAILS}<summary>The paper's numbers for these rows</summary>", "",
                    "| preset | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS), *paper_lines,
                    "", "</details>", ""]
        out += [f"{_DETAILS}<summary>Every run: file, epochs, time, machine, commit and command</summary>", ""]
        for (preset, loss, variant), members in rows:
            for m in sorted(members, key=lambda m: m["config"]["seed"]):
                how = {"early_stopping": "early stopping", "max_epochs": "epoch cap",
                       "time_budget": f"stopped at epoch {_last_epoch(m)} by the time budget, not converged"}
                out.append(
                    f"- `{m['_file']}`: {m['epochs_run']} epochs (cap {_cap(m)}, best {m['best_epoch']}, "
                    f"{how[stopped_by(m)]}), "
                    f"{m['seconds_per_epoch']:.1f} s/epoch, {m['total_seconds'] / 60:.0f} min, "
                    f"{_prose(m.get('machine', '?'))}, commit `{_short(_code(m.get('git_commit', '?')))}`"
                    f"{_resumed(m)}  \n  "
                    f"`{_code(m.get('command', '?'))}`{_repeat(m)}"
                    + (f"  \n  {_prose(m['note'])}" if m.get("note") else "")  # added by hand, e.g. where a run was made
                )
        out += ["", "</details>", ""]
        out += (studies or {}).get(dataset, [])
    return "\n".join(out).rstrip() + "\n"


def _repeat(results: dict[str, Any]) -> str:
    """What a reader adds to a run's command to repeat it with today's presets, if anything.

    A run cut by its clock (``--max-minutes``) cannot be repeated by its command on another
    machine, which would cut it elsewhere. When the cut epoch was validated and the run was
    never resumed, ``--epochs N`` (``N = epochs_run``) trains and validates the same epochs
    (``train.py`` validates its last epoch), so that flag, without ``--max-minutes``, repeats it.
    """
    from .cli import repeat_flags

    command = str(results.get("command", ""))
    clock_cut = _clock_cut(results)
    try:  # a clock-cut run is repeated with its epochs as the cap
        flags = repeat_flags(command, results["config"], results["epochs_run"] if clock_cut else _cap(results))
    except ValueError as err:
        return (f"  \n  Today's `train.py` cannot repeat this command as it stands ({_prose(err)}); "
                "the file's `config` has every setting.")
    if clock_cut:
        budget = _flag_value(command, "--max-minutes")
        drop = f"drop `--max-minutes {_code(budget)}` and " if budget is not None else ""
        return (f"  \n  Without a clock, the same run: {drop}add `{_code(' '.join(flags))}` (it trains and "
                "validates the epochs the cut run did).")
    if not flags:
        return ""
    return f"  \n  The presets have changed since: add `{_code(' '.join(flags))}` to repeat the run today."


def _clock_cut(results: dict[str, Any]) -> bool:
    """Whether a run ended by its time budget in its first call, with its last epoch validated."""
    history = results.get("history") or []
    return (stopped_by(results) == "time_budget" and not results.get("resumes") and not results.get("resumed_with")
            and bool(history) and "valid" in history[-1] and len(history) == int(results.get("epochs_run", -1)))


def _flag_value(command: str, flag: str) -> str | None:
    """The last value given to ``flag`` in ``command`` (argparse keeps the last), or ``None``."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    value = None
    for i, token in enumerate(tokens):
        if token == flag and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif token.startswith(flag + "="):
            value = token.split("=", 1)[1]
    return value


def _resumed(results: dict[str, Any]) -> str:
    """Where a run went on with ``--resume``, one clause per call (the file's own ``machine`` and
    ``git_commit`` are its first call's); older files keep only the last call's ``resumed_with``."""
    clauses = [f"; resumed after {r['after_epochs']} epochs on {_prose(r.get('machine', '?'))}, "
               f"commit `{_short(_code(r.get('git_commit', '?')))}`" for r in results.get("resumes", [])]
    if not clauses and results.get("resumed_with"):
        clauses = ["; resumed with `--resume` (resumed_with in the file)"]
    return "".join(clauses)


def _short(commit: str) -> str:
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The seeds' mean valid curve: at each epoch that every curve has, the mean of their values.

    ``curves`` holds one ``[(epoch, value), ...]`` per seed. Runs that stopped early end the mean
    at the shortest one's last shared epoch, so the line never jumps where a seed drops out.
    An empty list when no epoch is shared.

    Example:
        >>> mean_curve([[(1, 0.1), (3, 0.3), (5, 0.5)], [(1, 0.3), (3, 0.5)]])
        [(1, 0.2), (3, 0.4)]
    """
    if not curves:
        return []
    shared = set.intersection(*(set(e for e, _ in c) for c in curves))
    by_epoch = [dict(c) for c in curves]
    return [(e, sum(d[e] for d in by_epoch) / len(by_epoch)) for e in sorted(shared)]


def draw_curves(runs: list[dict[str, Any]], img_dir: Path) -> dict[str, str]:
    """One PNG per (dataset, loss): valid NDCG@20 per epoch, one colour per preset, one line per seed.

    The left panel has the presets as they are: one thin, faint line per seed and, on top, one
    thick line per preset, its seeds' mean (:func:`mean_curve`), so that the presets stay
    distinguishable where many seeds overlap. The right one, drawn only when there are such runs,
    has the variants (a preset with other settings), dashed, one colour per variant. Legends sit
    under the panels, and the y axis starts at half the best value so that the end of the runs,
    where they differ, is readable. Needs matplotlib."""
    plt = common.pyplot(LOG, "curves")
    if plt is None:
        return {}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[f"{_dataset(r)}-{r['config']['loss']}"].append(r)
    names = {}
    img_dir.mkdir(parents=True, exist_ok=True)
    for key, members in sorted(groups.items()):
        presets = sorted({m["config"]["preset"] for m in members}, key=_order)
        colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(presets)}
        seeded = []
        for m in members:
            points = [(h["epoch"], h["valid"]["NDCG@20"]) for h in m["history"] if "valid" in h]
            if points:
                seeded.append((m["config"]["preset"], _variant(m), m["config"]["seed"], points))
        curves = [(p, v, points) for p, v, _, points in sorted(seeded, key=lambda c: (_order(c[0]), c[1], c[2]))]
        if not curves:
            continue
        panels = [("presets", [c for c in curves if not c[1]]), ("variants", [c for c in curves if c[1]])]
        panels = [(title, cs) for title, cs in panels if cs]
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.6), sharey=True, squeeze=False)
        top = max(v for _, _, points in curves for _, v in points)
        for ax, (title, panel) in zip(axes[0], panels):
            labelled: set[str] = set()
            variant_colours: dict[str, Any] = {}
            seeds_of: dict[str, list[list[tuple[int, float]]]] = defaultdict(list)
            for preset, variant, points in panel:
                label = preset + (f" ({variant})" if variant else "")
                if variant:
                    colour = variant_colours.setdefault(label, plt.get_cmap("tab20")(len(variant_colours) % 20))
                    ax.plot(*zip(*points), color=colour, linewidth=1.0, alpha=0.8, linestyle="--",
                            label=None if label in labelled else label)
                    labelled.add(label)
                else:
                    seeds_of[preset].append(points)
                    ax.plot(*zip(*points), color=colours[preset], linewidth=0.6, alpha=0.3)
            for preset, seed_curves in seeds_of.items():  # the means go on top of every seed line
                mean = mean_curve(seed_curves)
                n = len(seed_curves)
                if mean:
                    ax.plot(*zip(*mean), color=colours[preset], linewidth=1.8,
                            label=preset + (f" (mean of {n} seeds)" if n > 1 else " (1 seed)"))
                else:  # seeds validated on different epochs (another --eval-every): no mean, still named
                    ax.plot([], [], color=colours[preset], linewidth=0.6,
                            label=f"{preset} ({n} seeds, no shared epoch)")
            ax.set_xlabel("epoch")
            ax.set_title(f"{key}: {title}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_ylim(top / 2, top * 1.03)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.16), frameon=False)
        axes[0][0].set_ylabel("valid NDCG@20 (thin: one line per seed)")
        name = f"curves-{key}.png"
        from .checkpoint import atomic_savefig

        atomic_savefig(fig, img_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        names[key] = name
    return names


SUMMARY_PRESETS = ("sasrec", "cl4srec", "iclrec", "s4rec")
SUMMARY_FIGURE = "summary-bce.png"


def draw_summary(runs: list[dict[str, Any]], paper: dict[str, Any] | None, img_dir: Path) -> str | None:
    """``summary-bce.png``: per dataset, the test NDCG@20 of the ``bce`` presets without settings
    off them (a dot: the mean over seeds, whiskers: one sample standard deviation, the seed count
    under the preset's name) beside the paper's row (a black diamond), for the page's "In short"
    table. The y axis spans the values, not zero upwards: the differences are the point.

    Returns the file name, or ``None`` when no run has one of :data:`SUMMARY_PRESETS` or
    matplotlib is missing."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        c = r["config"]
        if c["preset"] in SUMMARY_PRESETS and is_plain(r):
            values[_dataset(r)][c["preset"]].append(float(r["test"]["NDCG@20"]))
    if not values:
        return None
    plt = common.pyplot(LOG, "the summary figure")
    if plt is None:
        return None
    order = ("Beauty", "Toys", "Sports")  # the order of the page's tables
    datasets = sorted(values, key=lambda d: order.index(d) if d in order else len(order))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.0), squeeze=False)
    fig.subplots_adjust(wspace=0.4)
    for ax, dataset in zip(axes[0], datasets):
        presets = [p for p in SUMMARY_PRESETS if values[dataset][p]]
        for x, preset in enumerate(presets):
            seeds = values[dataset][preset]
            std = statistics.stdev(seeds) if len(seeds) > 1 else 0.0
            ax.errorbar(x - 0.1, statistics.fmean(seeds), yerr=std, fmt="o", capsize=3, markersize=6,
                        color=plt.get_cmap("tab10")(SUMMARY_PRESETS.index(preset)))
            ref = paper_row(paper, dataset, preset)
            if ref is not None:
                ax.plot(x + 0.1, ref[3], marker="D", color="black", markersize=5, linestyle="none")
        ax.set_xticks(range(len(presets)), [f"{p}\n({len(values[dataset][p])})" for p in presets], fontsize=8)
        ax.set_xlim(-0.6, len(presets) - 0.4)
        ax.set_title(dataset, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test NDCG@20")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", color="grey", linestyle="none", label="here: mean ± std over seeds (count)"),
               Line2D([], [], marker="D", color="black", linestyle="none", label="the paper")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.08))
    img_dir.mkdir(parents=True, exist_ok=True)
    from .checkpoint import atomic_savefig

    atomic_savefig(fig, img_dir / SUMMARY_FIGURE, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return SUMMARY_FIGURE


def replace_section(page: str, section: str) -> str:
    """``page`` with the text between the markers replaced (markers appended when missing)."""
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in page and END in page:
        head, rest = page.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    return page.rstrip() + "\n\n## Results\n\n" + block + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = common.make_parser("report.py", __doc__)
    p.add_argument("--results-dir", default=str(ROOT / "docs" / "results"), help="folder of results files")
    p.add_argument("--page", default=str(ROOT / "docs" / "reproduction.md"), help="page whose marked section is rewritten")
    p.add_argument("--img-dir", default=str(ROOT / "docs" / "img"), help="where the curves go")
    p.add_argument("--paper", default=str(ROOT.parent / "shared" / "paper" / "results.json"),
                   help="the paper's numbers; 'none' writes the tables without them (a missing file does "
                        "too, with a warning on stderr)")
    p.add_argument("--add", nargs="+", default=[], metavar="RUN", help="first copy these runs' results.json in")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the page's tables are out of date")
    p.add_argument("--no-figures", action="store_true", help="do not draw the curves")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def _run(args: argparse.Namespace) -> str:
    results_dir, page_path = Path(args.results_dir), Path(args.page)
    if args.check and args.add:
        raise common.UsageError("--check writes nothing and --add copies runs in: run them one after the other")
    for run in args.add:
        LOG.info("added %s", add_run(Path(run), results_dir))
    if not results_dir.is_dir():
        raise common.UsageError(f"--results-dir {results_dir}: no such folder")
    if not page_path.is_file():
        raise common.UsageError(f"--page {page_path}: no such file")
    runs = load_results(results_dir)
    paper_path = Path(args.paper)
    paper = common.read_json(paper_path, "--paper") if paper_path.is_file() else None
    if paper is None and args.paper != "none":
        # a warning even under --quiet: without it the regenerated tables silently lose a column
        print(f"report.py: warning: --paper {paper_path}: no such file; the tables are written without the "
              f"paper's numbers (pass --paper FILE, or --paper none to leave them out)", file=sys.stderr)
    keys = sorted({f"{_dataset(r)}-{r['config']['loss']}" for r in runs})
    points = grid_points(runs, _dataset)
    if args.check or args.no_figures:
        img_names = {k: f"curves-{k}.png" for k in keys if (Path(args.img_dir) / f"curves-{k}.png").exists()}
        param_names = {k: f"params-{k}.png" for k in points if (Path(args.img_dir) / f"params-{k}.png").exists()}
    else:
        img_names = draw_curves(runs, Path(args.img_dir))
        param_names = draw_sensitivity(points, Path(args.img_dir))
        draw_summary(runs, paper, Path(args.img_dir))  # shown by the page's hand-written "In short"
    href = Path(os.path.relpath(results_dir.resolve(), page_path.resolve().parent)).as_posix()
    extras: dict[str, list[str]] = defaultdict(list)
    for part in (render_sensitivity(points, param_names), load_studies(results_dir, href),
                 load_significance(results_dir)):
        for dataset, lines in part.items():
            extras[dataset] += lines
    section = render_tables(runs, paper, img_names, extras)
    page = page_path.read_text()
    updated = replace_section(page, section)
    if args.check:
        if updated != page:
            print(f"{page_path}: the results section is out of date; run python examples/s4rec/report.py")
            raise SystemExit(1)
        return section
    if updated != page:
        from .checkpoint import atomic_write_text

        atomic_write_text(page_path, updated)
    LOG.info("%d runs -> %s (%d figures)", len(runs), page_path, len(img_names) + len(param_names))
    return section


def main(argv: list[str] | None = None) -> str:
    args = build_parser().parse_args(argv)
    if not args.quiet:
        common.setup_console_logging(quiet=False)
    return common.run_guarded(lambda: _run(args), debug=args.debug, prog="report.py")



