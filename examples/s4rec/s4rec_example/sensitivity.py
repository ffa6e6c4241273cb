"""One setting at a time around the ``s4rec`` preset: the paper's parameter analysis (Figure 6).

The paper tunes S4Rec's loss weights ``alpha``, ``beta1``, ``beta2``, ``lam`` over
{0, 0.01, 0.1, 1} and its temperatures over {0.1, 1}, and shows in its Figure 6 how the score
moves when one weight leaves the chosen combination. This module collects, from the committed
results files, the runs whose settings are the ``s4rec`` preset's except exactly one of those
(an ablation preset counts: ``s4rec-no-gr`` is ``lam = 0``, ``sr+csd+gr`` is ``alpha = 0``),
and renders for each setting with at least two values a table row per value (seeds, mean valid
and test NDCG@20) and one figure per dataset and loss.

The recipe rule of the reproduction is applied in the table: the value whose valid NDCG@20 beats
the preset's by the most, on the seeds both were run with, is the one a grid search would pick;
the test column is shown beside it, never used to choose.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cli_common as common

__all__ = ["CENTRE", "GRID_SETTINGS", "draw_sensitivity", "grid_points", "paired_gain", "render_sensitivity",
           "settings_diff"]

LOG = logging.getLogger("s4rec.report")
CENTRE = "s4rec"
"""The preset the settings are varied around."""
GRID_SETTINGS = {
    "alpha": "α (weight of L_Clust)",
    "beta1": "β₁ (weight of L_SCL)",
    "beta2": "β₂ (weight of L_CKD)",
    "lam": "λ (weight of L_Adv)",
    "cluster_temperature": "τ₁ (clustering)",
    "cl_temperature": "τ₂ (contrastive)",
    "distill_temperature": "τ₃ (distillation)",
    "num_prototypes": "K (prototypes)",
}
"""Settings of the paper's grids and parameter analysis -> how the page names them."""

_IGNORED = {"data", "data_root", "seed", "device", "epochs", "eval_batch_size", "eval_every", "synthetic_users",
            "synthetic_items", "loss", "preset"}
"""Config keys that do not make a different recipe (where the data lives, the seed, the cap)."""

Points = dict[str, dict[float, list[dict[str, Any]]]]
"""setting -> value -> the runs at that value."""


def settings_diff(run: dict[str, Any], preset: str) -> dict[str, Any]:
    """The settings of ``run`` that differ from ``preset``'s, as ``{key: the run's value}``.

    A run recorded before a setting existed ran with that setting's default; a setting of a
    loss term whose weight is 0 in the run changed nothing and is left out.
    """
    from .config import TrainConfig, inert_settings

    base = TrainConfig.from_preset(preset).to_dict()
    ran = {**TrainConfig().to_dict(), **run["config"]}
    return {k: ran[k] for k in sorted(ran)
            if k not in _IGNORED | inert_settings(ran) and k in base and ran[k] != base[k]}


def _key(value: Any) -> float:
    """A setting's value as a table key: 6 significant digits, so that 1.0000000001 is 1."""
    return float(f"{float(value):.6g}")


def _scored(run: dict[str, Any]) -> bool:
    return all(math.isfinite(float((run.get(split) or {}).get("NDCG@20", math.nan))) for split in ("valid", "test"))


def grid_points(runs: list[dict[str, Any]], dataset_of: Callable[[dict[str, Any]], str]) -> dict[str, Points]:
    """``"<dataset>-<loss>"`` -> setting -> value -> runs, for the settings varied alone.

    A run on the centre preset's settings joins every setting at the preset's value; a setting
    is kept only when it was run at two values or more. Runs without a finite valid and test
    NDCG@20 are left out (with a log line).
    """
    from .config import TrainConfig

    centre = TrainConfig.from_preset(CENTRE).to_dict()
    centres: dict[str, list[dict[str, Any]]] = defaultdict(list)
    varied: dict[str, Points] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in runs:
        key = f"{dataset_of(r)}-{r['config']['loss']}"
        diff = {k: v for k, v in settings_diff(r, CENTRE).items()
                if not (k in GRID_SETTINGS and _key(v) == _key(centre[k]))}
        if len(diff) > 1 or (diff and next(iter(diff)) not in GRID_SETTINGS):
            continue
        if not _scored(r):
            LOG.warning("%s: no finite valid and test NDCG@20; left out of the one-setting analysis",
                        r.get("_file", "a run"))
        elif not diff:
            centres[key].append(r)
        else:
            setting, value = next(iter(diff.items()))
            varied[key][setting][_key(value)].append(r)
    out: dict[str, Points] = {}
    for key, settings in varied.items():
        kept: Points = {}
        for setting, values in settings.items():
            if centres[key]:
                values[_key(centre[setting])].extend(centres[key])
            if len(values) >= 2:
                kept[setting] = dict(sorted(values.items()))
        if kept:
            out[key] = dict(sorted(kept.items(), key=lambda kv: list(GRID_SETTINGS).index(kv[0])))
    return out


def _mean(members: list[dict[str, Any]], split: str) -> float:
    """Mean over the seeds (a seed run twice counts once, with the mean of its runs)."""
    return statistics.fmean(_by_seed(members, split).values())


def _by_seed(members: list[dict[str, Any]], split: str) -> dict[int, float]:
    """Seed -> NDCG@20 (the mean if a seed was run twice at one value)."""
    scores: dict[int, list[float]] = defaultdict(list)
    for m in members:
        scores[int(m["config"]["seed"])].append(m[split]["NDCG@20"])
    return {seed: statistics.fmean(v) for seed, v in scores.items()}


def paired_gain(members: list[dict[str, Any]], reference: list[dict[str, Any]], split: str) -> float | None:
    """Mean over the seeds run at both values of (score at this value - score at the reference).

    Seeds differ by about as much as the settings do, so values run on different seeds are
    compared on the seeds they share; ``None`` when they share none.
    """
    mine, theirs = _by_seed(members, split), _by_seed(reference, split)
    shared = sorted(mine.keys() & theirs.keys())
    return statistics.fmean(mine[s] - theirs[s] for s in shared) if shared else None


def _y_range(settings: dict[str, dict[float, list[dict[str, Any]]]]) -> tuple[float, float]:
    """The shared y range of a sensitivity figure: every plotted NDCG@20 at or above half their
    median (a collapsed run, far below, is drawn on the bottom edge instead), with a margin."""
    ys = [m[split]["NDCG@20"] for values in settings.values() for members in values.values()
          for m in members for split in ("valid", "test")]
    floor = statistics.median(ys) / 2
    kept = [y for y in ys if y >= floor]
    pad = max(0.1 * (max(kept) - min(kept)), 0.001)
    return max(min(kept) - pad, 0.0), max(kept) + pad


def _value(v: float) -> str:
    return f"{v:g}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def render_sensitivity(points: dict[str, Points], img_names: dict[str, str]) -> dict[str, list[str]]:
    """Markdown lines per dataset: one table (and figure, when drawn) per loss."""
    from .config import TrainConfig

    centre = TrainConfig.from_preset(CENTRE).to_dict()
    out: dict[str, list[str]] = defaultdict(list)
    for key, settings in sorted(points.items()):
        dataset, loss = key.rsplit("-", 1)
        lines = out[dataset]
        lines += [f"#### One setting at a time around `{CENTRE}` ({loss}; the paper's Figure 6)", "",
                  f"Runs with all of the `{CENTRE}` preset's settings (its batch of 512 included: runs at 256 are "
                  "left out) except the one named (ablation presets included: "
                  "`s4rec-no-gr` is λ = 0, `sr+csd+gr` is α = 0). NDCG@20: the mean over the seeds run at each "
                  "value, then the difference to the preset's value on the seeds both were run with (seeds move "
                  "the score about as much as these settings do). **p**: the preset's value; **v**: the value a "
                  "grid search on the validation split picks (the best paired valid difference; test is shown, "
                  "never used to choose).", "",
                  "| setting | value | | seeds | valid | test | valid − preset, same seeds | test − preset, same seeds |",
                  "|---|---:|---|---|---:|---:|---:|---:|"]
        for setting, values in settings.items():
            preset_value = _key(centre[setting])
            reference = values.get(preset_value)
            gains = {v: (paired_gain(m, reference, "valid") if reference else None) for v, m in values.items()}
            # the grid moves off the preset only for a strictly better paired valid score
            best, best_gain = (preset_value if reference else None), 0.0
            for value, gain in gains.items():
                if gain is not None and gain > best_gain:  # False for NaN
                    best, best_gain = value, gain
            for value, members in values.items():
                marks = " ".join(m for m, on in (("p", value == preset_value), ("v", value == best)) if on)
                seeds = ", ".join(str(s) for s in sorted(_by_seed(members, "valid")))
                test_gain = paired_gain(members, reference, "test") if reference else None
                lines.append(f"| {GRID_SETTINGS[setting]} | {_value(value)} | {marks} | {seeds} | "
                             f"{_mean(members, 'valid'):.4f} | {_mean(members, 'test'):.4f} | "
                             f"{_signed(gains[value])} | {_signed(test_gain)} |")
        lines.append("")
        if key in img_names:
            lines += [f"![NDCG@20 against one setting, {key}](img/{img_names[key]})", ""]
    return dict(out)


def draw_sensitivity(points: dict[str, Points], img_dir: Path) -> dict[str, str]:
    """One PNG per dataset and loss, ``params-<dataset>-<loss>.png``: a panel per setting (one
    shared y axis), valid (solid) and test (dashed) NDCG@20 against the setting's values, seeds as dots. Needs
    matplotlib; returns ``{}`` without it.

    A run that collapsed (below half the median of all plotted values) would squash every panel's
    scale; it is drawn on the bottom edge instead: an open downward triangle for seeds, a filled
    one labelled with its value for a mean."""
    plt = common.pyplot(LOG, "sensitivity figures")
    if plt is None:
        return {}
    names: dict[str, str] = {}
    img_dir.mkdir(parents=True, exist_ok=True)
    for key, settings in sorted(points.items()):
        fig, axes = plt.subplots(1, len(settings), figsize=(0.8 + 2.8 * len(settings), 3.0), sharey=True,
                                 squeeze=False)
        low, high = _y_range(settings)
        for ax, (setting, values) in zip(axes[0], settings.items()):
            xs = range(len(values))  # the grid's values are decades apart and include 0: categorical axis
            for split, style, colour in (("valid", "-o", "tab:blue"), ("test", "--s", "tab:orange")):
                means = [_mean(m, split) for m in values.values()]
                ax.plot(xs, [max(y, low) for y in means], style, color=colour, label=split)
                for x, members, y in zip(xs, values.values(), means):
                    seeds = [m[split]["NDCG@20"] for m in members]
                    on_scale = [v for v in seeds if v >= low]
                    ax.scatter([x] * len(on_scale), on_scale, color=colour, s=9, alpha=0.4)
                    if len(on_scale) < len(seeds):  # seeds below the scale: open triangles on its edge
                        ax.scatter([x], [low], marker="v", facecolors="none", edgecolors=colour, s=30,
                                   clip_on=False, zorder=3)
                    if y < low:  # the mean too: a filled triangle with its value
                        ax.plot([x], [low], "v", color=colour, markersize=9, clip_on=False, zorder=4)
                        last = x == len(values) - 1
                        ax.annotate(f"{split} {y:.4f}", (x, low), textcoords="offset points",
                                    xytext=(-6 if last else 6, 14 if split == "valid" else 4),
                                    ha="right" if last else "left", fontsize=7, color=colour)
            ax.set_xticks(list(xs), [_value(v) for v in values])
            ax.set_title(GRID_SETTINGS[setting], fontsize=9)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylim(low, high)
        axes[0][0].set_ylabel("NDCG@20 (mean; dots: seeds)")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{key}: one setting at a time around {CENTRE}", fontsize=10)
        fig.tight_layout()
        name = f"params-{key}.png"
        from .checkpoint import atomic_savefig

        atomic_savefig(fig, img_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        names[key] = name
    return names
