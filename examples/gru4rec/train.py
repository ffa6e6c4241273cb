#!/usr/bin/env python
"""Add S4Rec's self-supervised pieces to your own recommender: a plain GRU4Rec, then the pieces.

This script is the companion of the docs page "Tutorial: your own recommender". It trains a
plain GRU4Rec (an ``nn.GRU`` over item embeddings, full-softmax next-item loss), and with
``--pieces`` (the default) adds four pieces of ``s4rec_components`` (with the settings of the
tutorial's table: its distillation temperature 0.1 and clustering weight 0.1 differ from the
recommended 1.0 and 0.01):

* ``SequenceAugmenter``: two augmented views of every training sequence;
* ``OnlineIntentClustering``: trainable intent prototypes with Sinkhorn targets;
* ``IntentInfoNCE``: the views against each other, the batch and the other intents;
* ``PrototypeDistillation``: each view pulled towards its intent prototype.

Evaluation is the library's full ranking (``evaluate_ranking``) with the user's history
excluded. The last line on stdout is one JSON object with the test metrics (HR@5, HR@10,
HR@20, NDCG@5, NDCG@10, NDCG@20); progress goes to stderr.

    python examples/gru4rec/train.py                         # generated data, with the pieces, CPU
    python examples/gru4rec/train.py --no-pieces             # GRU4Rec alone
    python examples/gru4rec/train.py --data ../shared/data/Beauty.txt --seed 1 --threads 1 \\
        --output runs/beauty-gru-pieces-s1.json
    python examples/gru4rec/train.py --encoder transformer   # your own Transformer instead

Only ``torch`` and ``s4rec_components`` are needed.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s4rec_components import (
    DownloadError,
    IntentInfoNCE,
    OnlineIntentClustering,
    PrototypeDistillation,
    SequenceAugmenter,
    SequenceDataset,
    evaluate_ranking,
    generate_synthetic,
    linear_cross_entropy,
    load_sequences,
    set_validate_args,
    validate_args_enabled,
)
from s4rec_components.data import LeaveOneOutSplit

if TYPE_CHECKING:
    from s4rec_components.data.public import DatasetName

METRIC_KEYS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")
DATASET_NAMES = ("Beauty", "Sports", "Toys", "ML-1M")


# --------------------------------------------------------------------------- your model


# --8<-- [start:model]
class GRU4Rec(nn.Module):
    """A plain GRU4Rec: item embeddings -> GRU -> scores against the same item table.

    The table has ``num_items + 2`` rows: 0 is padding, ``1..n`` are the items and ``n + 1`` is
    the mask token that ``SequenceAugmenter`` writes (its default ``mask_id``). Inputs are
    left-padded, so column ``l - 1`` is always the most recent item.
    """

    def __init__(self, num_items: int, *, hidden_size: int = 64, dropout: float = 0.25) -> None:
        super().__init__()
        self.num_items = num_items
        self.item_embeddings = nn.Embedding(num_items + 2, hidden_size, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        nn.init.normal_(self.item_embeddings.weight, std=0.02)
        with torch.no_grad():
            self.item_embeddings.weight[0].zero_()

    def forward(self, item_ids: Tensor) -> Tensor:
        """(b, l) left-padded ids -> (b, l, d) hidden states."""
        hidden: Tensor
        hidden, _ = self.gru(self.dropout(self.item_embeddings(item_ids)))
        return hidden

    def score(self, hidden: Tensor) -> Tensor:
        """(..., d) -> (..., n + 2) scores of every id (0 and n + 1 are excluded by the caller)."""
        return hidden @ self.item_embeddings.weight.T
# --8<-- [end:model]


# --8<-- [start:transformer]
class OwnTransformer(nn.Module):
    """A user's own causal Transformer encoder, built from ``torch.nn`` only (the docs' 2nd part).

    Same interface as ``GRU4Rec``: ``forward(ids) -> (b, l, d)``, ``score(h)``. Padding keys are
    masked; a padding query, which would see no key at all, attends to itself so nothing is NaN.
    """

    def __init__(self, num_items: int, *, hidden_size: int = 64, num_layers: int = 2,
                 num_heads: int = 2, max_len: int = 50, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_items, self.num_heads, self.max_len = num_items, num_heads, max_len
        self.item_embeddings = nn.Embedding(num_items + 2, hidden_size, padding_idx=0)
        self.positions = nn.Embedding(max_len, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout,
                                           activation="gelu", batch_first=True, norm_first=False)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        for table in (self.item_embeddings, self.positions):  # small scores at the start, as GRU4Rec's
            nn.init.normal_(table.weight, std=0.02)
        with torch.no_grad():
            self.item_embeddings.weight[0].zero_()

    def forward(self, item_ids: Tensor) -> Tensor:
        b, l = item_ids.shape
        # counted from the right: the newest item is always position max_len - 1, in a batch
        # cut to its longest row (training) as in a full-width one (evaluation)
        positions = torch.arange(self.max_len - l, self.max_len, device=item_ids.device)
        x = self.dropout(self.norm(self.item_embeddings(item_ids) + self.positions(positions)))
        causal = torch.ones(l, l, dtype=torch.bool, device=item_ids.device).tril()
        eye = torch.eye(l, dtype=torch.bool, device=item_ids.device)
        allowed = (causal & (item_ids != 0)[:, None, :]) | eye      # (b, l, l)
        blocked = (~allowed).repeat_interleave(self.num_heads, dim=0)  # (b * heads, l, l)
        hidden: Tensor = self.layers(x, mask=blocked)
        return hidden

    def score(self, hidden: Tensor) -> Tensor:
        return hidden @ self.item_embeddings.weight.T
# --8<-- [end:transformer]


# --8<-- [start:pool]
def mean_over_real(hidden: Tensor, item_ids: Tensor) -> Tensor:
    """(b, l, d), (b, l) -> (b, d): mean of the hidden states at real (non-padding) positions."""
    real = (item_ids != 0).to(hidden.dtype).unsqueeze(-1)
    return (hidden * real).sum(1) / real.sum(1).clamp_min(1.0)
# --8<-- [end:pool]


# --------------------------------------------------------------------------- the pieces


# --8<-- [start:pieces]
class Pieces(nn.Module):
    """S4Rec's self-supervised terms (the tutorial's table says where they differ from the recommended settings)."""

    def __init__(self, num_items: int, hidden_size: int, *, num_prototypes: int = 64,
                 weight: float = 0.1) -> None:
        super().__init__()
        self.weight = weight
        # ICLRec's views: one of crop (keep 20%), mask (70%) or reorder (20%) per view. The mask
        # id is the default n + 1, which is why the item table has n + 2 rows.
        self.augment = SequenceAugmenter(num_items, operations=("crop", "mask", "reorder"))
        # Prototypes on the unit sphere; the head normalises z itself (normalize=True).
        self.clusters = OnlineIntentClustering(hidden_size, num_prototypes)
        # S4Rec's Eq. 14: ICLRec's instance term (dot product, temperature 1, NT-Xent mean over
        # the 2b anchors) with the prototypes a view is not assigned to as extra negatives.
        self.nce = IntentInfoNCE(temperature=1.0, similarity="dot")
        # Student and teacher both unit-norm; a sharp temperature so the teacher is not uniform.
        self.distill = PrototypeDistillation(temperature=0.1)

    def loss(self, model: nn.Module, item_ids: Tensor, hidden: Tensor,
             generator: torch.Generator) -> Tensor:
        view1 = self.augment(item_ids, generator=generator)
        view2 = self.augment(item_ids, generator=generator)
        z = mean_over_real(hidden, item_ids)             # the sequence itself: what is clustered
        z1 = mean_over_real(model(view1), view1)         # the views: what is contrasted
        z2 = mean_over_real(model(view2), view2)
        c = self.clusters(z)
        contrastive = self.nce(z1, z2, c.prototypes, c.assignments)
        distillation = 0.5 * (self.distill(F.normalize(z1, dim=-1), c.prototypes, c.assignments)
                              + self.distill(F.normalize(z2, dim=-1), c.prototypes, c.assignments))
        total: Tensor = self.weight * (c.loss + contrastive + distillation)
        return total
# --8<-- [end:pieces]


# --------------------------------------------------------------------------- training


# --8<-- [start:loss]
class Recommender(Protocol):
    """What the loss and the evaluation need from a model: GRU4Rec, OwnTransformer or yours."""

    item_embeddings: nn.Embedding                        # (n + 2, d): 0 padding, n + 1 mask

    def __call__(self, item_ids: Tensor) -> Tensor: ...  # (b, l) ids -> (b, l, d) hidden states
    def score(self, hidden: Tensor) -> Tensor: ...       # (..., d) -> (..., n + 2) scores
    def train(self, mode: bool = True) -> nn.Module: ...
    def eval(self) -> nn.Module: ...


def next_item_loss(model: Recommender, hidden: Tensor, rows: Tensor, cols: Tensor, labels: Tensor,
                   never: tuple[int, int]) -> Tensor:
    """Full-softmax cross-entropy at the real positions ``(rows, cols)``; ``never``: (0, n + 1).

    The same value and gradient as
    ``F.cross_entropy(model.score(h).index_fill(1, torch.tensor(never), -inf), labels)`` with
    ``h = hidden[rows, cols]``, but fused and chunked: the ``(p, n + 2)`` logits never exist
    whole (on Beauty's 12,103 columns, 12,101 items, padding and the mask id, a GRU4Rec epoch
    on one CPU thread drops from about 90 s to about 10 s).
    """
    return linear_cross_entropy(hidden[rows, cols], model.item_embeddings.weight, labels,
                                ignore_columns=never)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A CPU batch tensor on ``device``. To a GPU through pinned memory, without waiting: a
    plain ``.to("cuda")`` of pageable memory blocks the host until the copy (and so the
    previous step) is done."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
# --8<-- [end:loss]


# --8<-- [start:evaluate]
def evaluate(model: Recommender, split: LeaveOneOutSplit, which: Literal["valid", "test"],
             device: torch.device) -> dict[str, float]:
    model.eval()

    def score_fn(item_ids: Tensor) -> Tensor:
        return model.score(model(item_ids)[:, -1])       # (b, n + 2): all ids, ignored ones dropped

    result = evaluate_ranking(
        score_fn, split.inputs(which), split.targets(which), history=split.history(which),
        ignore_ids=(0, split.num_items + 1), device=device, batch_size=512,
    )
    model.train()
    return {key: float(result.metrics[key]) for key in METRIC_KEYS}
# --8<-- [end:evaluate]


def load(data: str | None, num_users: int, data_root: str) -> SequenceDataset:
    if data is None:
        return generate_synthetic(num_users=num_users, seed=0)
    if data in DATASET_NAMES:
        from s4rec_components import download_dataset

        return load_sequences(download_dataset(cast("DatasetName", data), data_root))
    return load_sequences(data)


def train(args: argparse.Namespace, dataset: SequenceDataset | None = None) -> dict[str, Any]:
    """Train, select on valid, test once; the library's value-check switch (global, turned off
    after the first step) is put back as it was however the run ends."""
    with set_validate_args(validate_args_enabled()):   # on exit: the setting it found
        return _train(args, dataset)


def _train(args: argparse.Namespace, dataset: SequenceDataset | None) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if dataset is None:
        dataset = load(args.data, args.num_users, args.data_root)
    split = dataset.split(max_len=args.max_len)
    n = split.num_items
    if args.encoder == "gru":
        model: GRU4Rec | OwnTransformer = GRU4Rec(n, hidden_size=args.hidden_size)
    else:
        model = OwnTransformer(n, hidden_size=args.hidden_size, max_len=args.max_len)
    model.to(device)
# --8<-- [start:optimizer]
    pieces = None
    if args.pieces:
        pieces = Pieces(n, args.hidden_size, num_prototypes=args.num_prototypes,
                        weight=args.weight).to(device)
    # The prototypes are parameters too: they must be in the optimiser.
    parameters = list(model.parameters())
    if pieces is not None:
        parameters += list(pieces.parameters())
    optimizer = torch.optim.Adam(parameters, lr=args.lr)
# --8<-- [end:optimizer]

    never = (0, n + 1)
    users = torch.nonzero(split.train_targets.ne(0).any(1)).squeeze(1)   # users with a target
    shuffle = torch.Generator().manual_seed(args.seed)
    views = torch.Generator(device=device).manual_seed(args.seed + 1)
    best, best_state, best_epoch, curve, started = -1.0, None, -1, [], time.time()
    stopped_by = "max_epochs"
    for epoch in range(args.epochs):
        model.train()
        set_validate_args(epoch == 0)   # the library's checks run on the run's first step only
        # the epoch's loss is summed on the device (float64 as Python's floats; MPS has no float64)
        total = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
        steps = 0
# --8<-- [start:step]
        for batch in users[torch.randperm(len(users), generator=shuffle)].split(args.batch_size):
            inputs, targets = split.train_inputs[batch], split.train_targets[batch]
            width = int((inputs != 0).sum(1).max())                  # CPU tensor: no device sync
            inputs, targets = inputs[:, -width:], targets[:, -width:]
            rows, cols = targets.nonzero(as_tuple=True)              # on the CPU as well
            labels = targets[rows, cols]
            inputs, rows, cols, labels = (to_device(t, device) for t in (inputs, rows, cols, labels))
            hidden = model(inputs)
            loss = next_item_loss(model, hidden, rows, cols, labels, never)
            if pieces is not None:
                loss = loss + pieces.loss(model, inputs, hidden, views)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.detach(), steps + 1             # no read from the device
            if epoch == 0 and steps == 1:
                # The first step ran with the library's value checks on; the inputs are sound,
                # so skip them for the remaining steps (they read tensors back to the host).
                set_validate_args(False)
# --8<-- [end:step]
        set_validate_args(True)   # evaluation checks its arguments, once an epoch
        valid = evaluate(model, split, "valid", device)
        mean_loss = float(total) / max(steps, 1)   # one read an epoch
        curve.append({"epoch": epoch, "loss": mean_loss, **valid})
        print(f"epoch {epoch:3d}  loss {mean_loss:.4f}"
              f"  valid NDCG@20 {valid['NDCG@20']:.4f}  HR@20 {valid['HR@20']:.4f}"
              f"  {time.time() - started:.0f}s", file=sys.stderr, flush=True)
        if valid["NDCG@20"] > best:
            best, best_epoch = valid["NDCG@20"], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= args.patience:
            stopped_by = "early_stopping"
            break
        if args.max_minutes is not None and time.time() - started >= 60.0 * args.max_minutes:
            stopped_by = "time_budget"    # not converged: the best epoch so far is tested
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, split, "test", device)
    return {
        "test": test,
        "best_epoch": best_epoch,
        "best_valid_ndcg20": best,
        "epochs_run": len(curve),
        "stopped_by": stopped_by,
        "seconds": round(time.time() - started, 1),
        "curve": curve,
    }


def git_commit() -> str | None:
    """The checkout's commit, with ``+dirty`` when the library has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=here, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "../../s4rec_components"],
                               capture_output=True, text=True, cwd=here, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None,
                   help="one-line-per-user file, or a dataset name (" + ", ".join(DATASET_NAMES)
                        + "); default: generated data (generate_synthetic)")
    p.add_argument("--data-root", default="data", help="where named datasets are downloaded")
    p.add_argument("--num-users", type=int, default=3000,
                   help="users of the generated data (without --data)")
    p.add_argument("--pieces", action=argparse.BooleanOptionalAction, default=True,
                   help="add the augmenter, clustering, intent InfoNCE and distillation")
    p.add_argument("--encoder", choices=("gru", "transformer"), default="gru",
                   help="GRU4Rec, or your own Transformer (torch.nn.TransformerEncoder)")
    p.add_argument("--epochs", type=int, default=30,
                   help="most epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=10,
                   help="epochs without a better valid NDCG@20 before stopping")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the model, the batches and the views")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads; 1 avoids oversubscription on a shared machine")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--batch-size", type=int, default=256, help="users per step")
    p.add_argument("--max-len", type=int, default=50,
                   help="model length l (last l items of a user)")
    p.add_argument("--hidden-size", type=int, default=64, help="d")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--num-prototypes", type=int, default=64,
                   help="k, intents of the clustering head")
    p.add_argument("--weight", type=float, default=0.1, help="weight of each self-supervised term")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget: stop after the epoch that exceeds it and test the best "
                        "epoch so far (the record says stopped_by: time_budget); default: none")
    p.add_argument("--output", default=None,
                   help="also write the full record (config, curve, test) as JSON here")
    return p


def check_device(name: str) -> None:
    """Refuse, before any training, a device this machine does not have."""
    try:
        device = torch.device(name)
    except RuntimeError:
        fail(f"--device {name!r}: not a torch device (e.g. cpu, cuda, cuda:1, mps)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            fail(f"--device {name}: this machine has {count} CUDA device(s) usable by this torch build")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        fail(f"--device {name}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        fail(f"--device {name!r}: expected cpu, cuda, cuda:N or mps")


def fail(message: str) -> NoReturn:
    """A user error: one line on stderr, exit status 2 (as argparse does, without the usage)."""
    print(f"train.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("epochs", "patience", "threads", "batch_size", "max_len", "hidden_size",
                 "num_prototypes", "num_users"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_minutes is not None and not args.max_minutes >= 0:   # also refuses nan
        fail(f"--max-minutes must be >= 0, got {args.max_minutes}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        fail(f"--lr must be a finite number > 0, got {args.lr}")
    if not (math.isfinite(args.weight) and args.weight >= 0):
        fail(f"--weight must be a finite number >= 0, got {args.weight}")
    check_device(args.device)
    if args.output and Path(args.output).is_dir():
        fail(f"--output {args.output}: is a folder; pass the path of a .json file to write")
    try:  # a missing, unreadable or malformed data file, or a failed download
        dataset = load(args.data, args.num_users, args.data_root)
    except (OSError, ValueError, DownloadError) as err:
        fail(f"--data {args.data}: {err}")
    if not bool((dataset.lengths >= 4).any()):   # leave-one-out keeps the last 2 for valid and test
        fail(f"--data {args.data}: no user has an item to train on (a user needs at least 4 items)")
    record = train(args, dataset)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        given = argv if argv is not None else sys.argv[1:]
        full = {"config": vars(args),
                "command": " ".join(["python", "examples/gru4rec/train.py", *given]),
                "git_commit": git_commit(), "torch": torch.__version__, **record}
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(full, indent=1) + "\n")
        tmp.replace(out)
    print(json.dumps({key: round(record["test"][key], 6) for key in METRIC_KEYS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
