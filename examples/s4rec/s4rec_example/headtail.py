"""Head/tail study of trained runs (paper Section 5.3, Figures 3 and 4).

For every run folder given (written by ``train.py``), this script

* assigns every user's training sequence to an intent: the online clustering head's hard
  assignment (``OnlineIntentClustering.assign``) for the s4rec family, or, for ``iclrec``, the
  k-means intents refit on the best model (as ICLRec does at the start of every epoch);
* computes each cluster's **head rate**, the share of head users among the users assigned to it
  (Figure 3: a box plot over clusters; a more compact box = head and tail users spread more
  evenly over the intents);
* measures how much the clustering knows about sequence length as the **mutual information**
  between a user's cluster and their head/tail flag (0 nats: head users spread over the clusters
  exactly as over the whole population), a summary of Figure 3 that small clusters do not blur;
* scores the test split and reports HR/NDCG for head and tail users separately (Figure 4).

Runs of the same preset and settings (the label ``report.py`` gives them) are drawn together:
their per-cluster head rates in one box, their metrics as the mean over seeds with the standard
deviation as an error bar.

Example:
    python examples/s4rec/headtail.py --runs runs/Beauty-s4rec-bce-s0 runs/Beauty-iclrec-bce-s0 \\
        --output runs/headtail

Writes ``headtail.json`` (the command, commit and machine, every run's study and the per-label
summary), ``head_rate_boxplot.png`` and ``headtail_metrics.png`` (matplotlib is optional; without
it only the JSON is written).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from s4rec_components import ranking_metrics

from . import cli_common as common
from .checkpoint import atomic_savefig, atomic_write_text, load_checkpoint, load_model
from .data import load_dataset, prepare
from .evaluate import check_compatible, score_split
from .intents import encode_sequences, fit_intents
from .model import S4RecModel
from .report import finished_results_name, run_label

__all__ = ["cluster_assignments", "head_rates", "length_information", "main", "study_run", "summarize"]

LOG = logging.getLogger("s4rec.headtail")


@torch.no_grad()
def cluster_assignments(model: S4RecModel, inputs: torch.Tensor, *, batch_size: int, seed: int,
                        num_intents: int, kmeans_iters: int, num_redo: int = 1) -> torch.Tensor | None:
    """``(u,)`` intent of every training sequence, or None for a preset without intents."""
    if model.clustering is not None:
        z = encode_sequences(model, inputs, model.z_pooling, batch_size)
        return torch.cat([model.clustering.assign(z[s : s + batch_size]) for s in range(0, z.shape[0], batch_size)])
    if model.uses_intents:
        intents = fit_intents(model, inputs, num_intents=num_intents, num_iters=kmeans_iters, seed=seed,
                              batch_size=batch_size, num_redo=num_redo)
        z = encode_sequences(model, inputs, model.intent_pooling, batch_size)
        return intents.kmeans.assign(z)
    return None


def head_rates(assignments: torch.Tensor, heads: torch.Tensor, num_clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per used cluster: the share of head users, and every cluster's size."""
    sizes = torch.bincount(assignments, minlength=num_clusters)
    head_counts = torch.bincount(assignments, weights=heads.float(), minlength=num_clusters)
    used = sizes > 0
    return head_counts[used] / sizes[used], sizes


def length_information(assignments: torch.Tensor, heads: torch.Tensor, num_clusters: int) -> float:
    r"""Mutual information (nats) between the cluster and the head/tail flag of the same users.

    $I(C; H) = \sum_{c, h} p(c, h) \log \frac{p(c, h)}{p(c)\,p(h)}$ over the empirical joint
    distribution of the ``(u,)`` long ``assignments`` and ``(u,)`` bool ``heads``: 0 when every
    cluster has the population's head share, at most $H(H)$ (about 0.50 nats for a 20 % head)
    when the clusters separate head from tail users completely.
    """
    h = heads.long()
    joint = torch.bincount(assignments * 2 + h, minlength=2 * num_clusters).double().view(num_clusters, 2)
    joint = joint / joint.sum()
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    used = joint > 0
    return float((joint[used] * (joint[used] / outer[used]).log()).sum())


def study_run(run_dir: Path, device: torch.device) -> dict[str, Any]:
    model, checkpoint = load_model(run_dir / "best.pt", device)
    config = checkpoint.config
    dataset = load_dataset(config)
    check_compatible(checkpoint.num_items, checkpoint.item_ids, dataset, str(run_dir / "best.pt"),
                     str(config.data or "(generated data)"))
    data = prepare(dataset, config, device)
    heads = data.heads.cpu()
    result: dict[str, Any] = {"run": str(run_dir), "preset": config.preset, "label": run_label(config.to_dict()),
                              "seed": config.seed, "data": config.data, "loss": config.loss, "head_quantile": config.head_quantile}
    results_file = finished_results_name(run_dir)  # the name report.py --add gives the run's file in docs/results
    if results_file is not None:
        result["results_file"] = results_file
    assign = cluster_assignments(model, data.split.train_inputs, batch_size=config.eval_batch_size, seed=config.seed,
                                 num_intents=config.num_intents, kmeans_iters=config.kmeans_iters,
                                 num_redo=config.kmeans_redo)
    if assign is not None:
        k = config.num_prototypes if model.clustering is not None else config.num_intents
        rates, sizes = head_rates(assign.cpu(), heads, k)
        q = torch.quantile(rates.double(), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
        result["head_rate"] = {
            "per_cluster": rates.tolist(),
            "cluster_sizes": sizes.tolist(),
            "clusters_used": int((sizes > 0).sum()),
            "quartiles": q.tolist(),
            "iqr": float(q[3] - q[1]),
            "std": float(rates.std()) if rates.numel() > 1 else 0.0,
            "overall_head_share": float(heads.float().mean()),
            "length_information": length_information(assign.cpu(), heads.bool(), k),
        }
    test = score_split(model.encoder, data.split, "test", batch_size=config.eval_batch_size)
    ranks = test.ranks.cpu()
    h = heads.bool()
    result["metrics"] = {
        "all": test.metrics,
        "head": ranking_metrics(ranks[h]),
        "tail": ranking_metrics(ranks[~h]),
        "num_head": int(h.sum()),
        "num_tail": int((~h).sum()),
    }
    return result


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per label, in the order the labels first appear: seeds, the mean and standard
    deviation over seeds of the head, tail and all-user metrics, and of the clustering's head-rate
    IQR and length information (where the runs have intents)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["label"], []).append(r)
    summary = []
    for label, runs in groups.items():
        entry: dict[str, Any] = {"label": label, "seeds": [r["seed"] for r in runs]}
        for group in ("all", "head", "tail"):
            entry[group] = {m: _mean_std([r["metrics"][group][m] for r in runs]) for m in runs[0]["metrics"][group]}
        if all("head_rate" in r for r in runs):
            for key in ("iqr", "length_information"):
                entry[key] = _mean_std([r["head_rate"][key] for r in runs])
        summary.append(entry)
    return summary


def plot(results: list[dict[str, Any]], output: Path) -> list[str]:
    plt = common.pyplot(LOG, "figures")
    if plt is None:
        return []
    files = []
    summary = summarize(results)
    names = {s["label"]: f"{s['label']}\n({len(s['seeds'])} seed{'s' * (len(s['seeds']) > 1)})" for s in summary}
    with_rates = [s for s in summary if "iqr" in s]
    if with_rates:
        boxes = [[x for r in results if r["label"] == s["label"] for x in r["head_rate"]["per_cluster"]]
                 for s in with_rates]
        fig, ax = plt.subplots(figsize=(1.8 + 1.7 * len(with_rates), 4.4))
        ax.boxplot(boxes)
        ax.set_xticks(range(1, len(with_rates) + 1), [names[s["label"]] for s in with_rates], fontsize=8)
        share = next(r for r in results if "head_rate" in r)["head_rate"]["overall_head_share"]
        ax.axhline(share, linestyle="--", color="grey", linewidth=1, label=f"head share of all users {share:.2f}")
        ax.set_ylabel("head rate of a cluster")
        ax.set_title("Head rate per cluster, clusters of all seeds pooled (Fig. 3)")
        ax.legend(loc="upper right")
        fig.tight_layout()
        atomic_savefig(fig, output / "head_rate_boxplot.png", dpi=120)
        plt.close(fig)
        files.append("head_rate_boxplot.png")
    metrics = ["HR@5", "HR@20", "NDCG@5", "NDCG@20"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    width = 0.8 / max(len(summary), 1)
    for ax, group in zip(axes, ["head", "tail"]):
        for i, s in enumerate(summary):
            ax.bar([j + i * width for j in range(len(metrics))], [s[group][m]["mean"] for m in metrics], width=width,
                   yerr=[s[group][m]["std"] for m in metrics], capsize=2, label=names[s["label"]].replace("\n", " "))
        ax.set_xticks([j + width * (len(summary) - 1) / 2 for j in range(len(metrics))], metrics)
        ax.set_title(f"{group} users (n={results[0]['metrics']['num_' + group]})")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(summary), 3), fontsize=8)
    fig.suptitle("Test metrics of head and tail users, mean and std over seeds (Fig. 4)")
    fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(summary) - 1) // 3), 1, 1))
    atomic_savefig(fig, output / "headtail_metrics.png", dpi=120)
    plt.close(fig)
    files.append("headtail_metrics.png")
    return files


def build_parser() -> argparse.ArgumentParser:
    p = common.make_parser("headtail.py", __doc__)
    p.add_argument("--runs", nargs="+", required=True, help="run folders written by train.py")
    p.add_argument("--output", required=True, help="folder for headtail.json and the figures (docs/results/"
                   "headtail-<dataset>-<loss> puts the study's table on the reproduction page via report.py)")
    common.add_runtime_arguments(p)
    return p


def _run(args: argparse.Namespace, argv: list[str]) -> list[dict[str, Any]]:
    device = common.parse_device(args.device)
    common.set_threads(args.threads)
    from .data import dataset_label

    # One study compares recipes on one dataset, loss and head/tail split (head_quantile): every
    # run's checkpoint is read and compared before any run is studied.
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise common.UsageError(f"--output {output}: exists and is not a folder")
    kinds = []
    for run in args.runs:
        if not (Path(run) / "best.pt").is_file():
            raise common.UsageError(f"--runs {run}: no best.pt there")
        config = load_checkpoint(Path(run) / "best.pt").config
        kinds.append((dataset_label(config.data), config.loss, config.head_quantile))
        if kinds[-1] != kinds[0]:
            raise common.UsageError(
                f"--runs: one dataset, loss and head quantile per study, got {kinds[0]} and {kinds[-1]} (at {run})"
            )
    results = [study_run(Path(run), device) for run in args.runs]
    output.mkdir(parents=True, exist_ok=True)
    from .cli import git_commit, machine

    study: dict[str, Any] = {
        "command": "python examples/s4rec/headtail.py " + shlex.join(argv),
        "git_commit": git_commit(), "machine": machine(device), "torch": torch.__version__,
        "summary": summarize(results), "runs": results,
    }
    atomic_write_text(output / "headtail.json", json.dumps(study, indent=1) + "\n")
    files = plot(results, output)
    for s in study["summary"]:
        line = (f"{s['label']:>16} ({len(s['seeds'])} seed(s)): head NDCG@20 {s['head']['NDCG@20']['mean']:.4f}, "
                f"tail NDCG@20 {s['tail']['NDCG@20']['mean']:.4f}")
        if "iqr" in s:
            line += (f", head-rate IQR {s['iqr']['mean']:.3f}, "
                     f"I(cluster; head) {s['length_information']['mean']:.4f} nats")
        print(line)
    print(f"written: {', '.join(['headtail.json', *files])} in {output}")
    return results


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    common.setup_console_logging(args.quiet)
    with common.restored_torch_settings():
        return common.run_guarded(lambda: _run(args, argv), debug=args.debug, prog="headtail.py")
