"""Head/tail study of trained runs (paper Section 5.3, Figures 3 and 4).

For every run folder given (written by ``train.py``), this script

* assigns every user's training sequence to its most likely prototype (``argmax_k p_u^k``,
  Eq. 7) and computes each cluster's **head rate**, the share of head users among the users
  assigned to it (Figure 3: a box plot over clusters; a more compact box = head and tail users
  spread more evenly over the intents);
* scores the test split and reports HR/NDCG for head users and tail users separately
  (Figure 4).

Example:
    python examples/s4rec/headtail.py --runs runs/beauty-s4rec runs/beauty-s4rec-no-gr \\
        --output runs/headtail

Writes ``headtail.json``, ``head_rate_boxplot.png`` and ``headtail_metrics.png`` (matplotlib is an
optional extra; without it only the JSON is written).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from s4rec_components import ranking_metrics

from model import S4Rec, load_checkpoint
from train import evaluate, head_labels, load_data

LOG = logging.getLogger("s4rec.headtail")


@torch.no_grad()
def cluster_head_rates(model: S4Rec, inputs: torch.Tensor, heads: torch.Tensor, batch_size: int = 2048):
    """Per-cluster head rate and size; ``inputs (u, l)``, ``heads (u,)`` 0/1."""
    if model.clustering is None:
        raise ValueError(f"preset {model.config.preset!r} has no clustering head: nothing to study")
    model.eval()
    protos = torch.nn.functional.normalize(model.clustering.prototypes, dim=-1)
    assignments = []
    for start in range(0, inputs.shape[0], batch_size):
        chunk = inputs[start : start + batch_size]
        z = model.encoder.represent(chunk, pooling=model.config.pooling)
        if model.clustering.normalize:
            z = torch.nn.functional.normalize(z, dim=-1)
        assignments.append((z @ protos.T).argmax(-1))
    assign = torch.cat(assignments)
    k = protos.shape[0]
    sizes = torch.bincount(assign, minlength=k)
    head_counts = torch.bincount(assign, weights=heads.float(), minlength=k)
    used = sizes > 0
    rates = head_counts[used] / sizes[used]
    return rates.cpu(), sizes.cpu()


def study_run(run_dir: Path, device: str, data_root: str) -> dict[str, Any]:
    model = load_checkpoint(run_dir / "best.pt", device)
    config = model.config
    dataset = load_data(config, data_root)
    split = dataset.split(max_len=config.max_len).to(device)
    heads = head_labels(split, config.head_quantile)
    result: dict[str, Any] = {"run": str(run_dir), "preset": config.preset, "data": config.data}
    if model.clustering is not None:
        rates, sizes = cluster_head_rates(model, split.train_inputs, heads)
        q = torch.quantile(rates, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
        result["head_rate"] = {
            "per_cluster": rates.tolist(),
            "cluster_sizes": sizes.tolist(),
            "clusters_used": int((sizes > 0).sum()),
            "quartiles": q.tolist(),
            "iqr": float(q[3] - q[1]),
            "std": float(rates.std()) if rates.numel() > 1 else 0.0,
            "overall_head_share": float(heads.float().mean()),
        }
    test = evaluate(model, split, "test", config.eval_batch_size, show=False)
    ranks = test.ranks.cpu()
    h = heads.cpu().bool()
    result["metrics"] = {
        "all": test.metrics,
        "head": ranking_metrics(ranks[h]),
        "tail": ranking_metrics(ranks[~h]),
        "num_head": int(h.sum()),
        "num_tail": int((~h).sum()),
    }
    return result


def plot(results: list[dict[str, Any]], output: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning("matplotlib not installed: figures skipped (pip install 's4rec-components[examples]')")
        return []
    files = []
    with_rates = [r for r in results if "head_rate" in r]
    if with_rates:
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(with_rates), 4))
        ax.boxplot([r["head_rate"]["per_cluster"] for r in with_rates])
        ax.set_xticks(range(1, len(with_rates) + 1), [r["preset"] for r in with_rates])
        share = with_rates[0]["head_rate"]["overall_head_share"]
        ax.axhline(share, linestyle="--", color="grey", linewidth=1, label=f"head share {share:.2f}")
        ax.set_ylabel("head rate of a cluster")
        ax.set_title("Head rate per cluster (Fig. 3)")
        ax.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(output / "head_rate_boxplot.png", dpi=120)
        plt.close(fig)
        files.append("head_rate_boxplot.png")
    metrics = ["HR@5", "HR@20", "NDCG@5", "NDCG@20"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    width = 0.8 / max(len(results), 1)
    for ax, group in zip(axes, ["head", "tail"]):
        for i, r in enumerate(results):
            values = [r["metrics"][group][m] for m in metrics]
            xs = [j + i * width for j in range(len(metrics))]
            ax.bar(xs, values, width=width, label=r["preset"])
        ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(metrics))], metrics)
        ax.set_title(f"{group} users (n={results[0]['metrics']['num_' + group]})")
    axes[0].legend()
    fig.suptitle("Test metrics of head and tail users (Fig. 4)")
    fig.tight_layout()
    fig.savefig(output / "headtail_metrics.png", dpi=120)
    plt.close(fig)
    files.append("headtail_metrics.png")
    return files


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run folders written by train.py")
    p.add_argument("--output", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default="data")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    results = [study_run(Path(r), args.device, args.data_root) for r in args.runs]
    (output / "headtail.json").write_text(json.dumps(results, indent=2))
    files = plot(results, output)
    for r in results:
        line = f"{r['preset']:>14}: head NDCG@20 {r['metrics']['head']['NDCG@20']:.4f}, tail NDCG@20 {r['metrics']['tail']['NDCG@20']:.4f}"
        if "head_rate" in r:
            line += f", head-rate IQR {r['head_rate']['iqr']:.3f} over {r['head_rate']['clusters_used']} clusters"
        print(line)
    print(f"written: {', '.join(['headtail.json', *files])} in {output}")
    return results


if __name__ == "__main__":
    main()
