"""Online clustering and the autograd-aware gather under torch.distributed (issue 11.2).

Two and three gloo processes on the CPU, spawned like the Sinkhorn test:

* ``all_gather_with_grad`` concatenates unequal local batches and sends every rank the
  summed gradient of its own rows;
* ``OnlineIntentClustering(distributed=True)`` inside DDP: the Sinkhorn targets cover the
  global batch, the mean of the ranks' losses is the single-process loss on the concatenated
  batch, and after a few SGD steps on different (unequal) local batches the prototypes and
  the encoder are identical on every rank and equal to a single-process run on the
  concatenated batches.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
from _gloo import gloo_group, spawn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from s4rec_components import OnlineIntentClustering
from s4rec_components.distributed import (
    all_gather_no_grad,
    all_gather_sizes,
    all_gather_with_grad,
    rank,
    world_size,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
    pytest.mark.filterwarnings("ignore:equipartition cannot hold:UserWarning"),
]

GATHER_SIZES = (3, 0, 2)  # unequal, one rank empty
LOCAL_BATCHES = (5, 3)  # unequal local batches of the clustering run
INPUT_SIZE, HIDDEN_SIZE, NUM_PROTOTYPES = 6, 4, 3
STEPS, LR = 4, 0.5


# ----------------------------------------------------------------------------- the gather


def _gather_worker(rank_: int, init_file: str, out_dir: str, full: torch.Tensor) -> None:
    with gloo_group(rank_, len(GATHER_SIZES), init_file):
        start = sum(GATHER_SIZES[:rank_])
        local = full[start : start + GATHER_SIZES[rank_]].clone().requires_grad_(True)
        gathered = all_gather_with_grad(local)
        # A different loss on every rank: weights (rank + 1) * (1, 2, 3, ...).
        weights = torch.arange(1.0, full.numel() + 1, dtype=full.dtype).view_as(full)
        (gathered * weights * (rank_ + 1)).sum().backward()
        ids = all_gather_no_grad(torch.arange(GATHER_SIZES[rank_]) + 100 * rank_)
        sizes = all_gather_sizes(GATHER_SIZES[rank_], torch.device("cpu"))
        torch.save(
            {
                "gathered": gathered.detach(),
                "grad": local.grad,
                "ids": ids,
                "sizes": sizes,
                "world": world_size(),
                "rank": rank(),
            },
            os.path.join(out_dir, f"gather{rank_}.pt"),
        )


def test_all_gather_with_grad_unequal_batches_three_processes():
    full = torch.randn(sum(GATHER_SIZES), 2, dtype=torch.float64)
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        spawn(_gather_worker, (init_file, tmp, full), len(GATHER_SIZES), init_file)
        results = [torch.load(os.path.join(tmp, f"gather{r}.pt")) for r in range(3)]
    weights = torch.arange(1.0, full.numel() + 1, dtype=full.dtype).view_as(full)
    summed = weights * sum(r + 1 for r in range(len(GATHER_SIZES)))  # (1 + 2 + 3) * weights
    expected_ids = torch.cat([torch.arange(n) + 100 * r for r, n in enumerate(GATHER_SIZES)])
    for r, result in enumerate(results):
        assert (result["world"], result["rank"]) == (3, r)
        assert result["sizes"] == list(GATHER_SIZES)
        torch.testing.assert_close(result["gathered"], full, rtol=0, atol=0)
        start = sum(GATHER_SIZES[:r])
        grad = result["grad"]
        if GATHER_SIZES[r] == 0:
            assert grad is None or grad.numel() == 0
        else:
            torch.testing.assert_close(grad, summed[start : start + GATHER_SIZES[r]])
        assert torch.equal(result["ids"], expected_ids)


def test_helpers_without_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(x) is x
    assert all_gather_no_grad(x) is x
    assert all_gather_sizes(3, torch.device("cpu")) == [3]
    assert (world_size(), rank()) == (1, 0)


# ----------------------------------------------------------------------------- clustering


class _Model(nn.Module):
    """A linear encoder and the clustering head: the gradient reaches both."""

    def __init__(self, distributed: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(INPUT_SIZE, HIDDEN_SIZE)
        self.clustering = OnlineIntentClustering(
            HIDDEN_SIZE, NUM_PROTOTYPES, temperature=0.5, epsilon=0.1, distributed=distributed
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.clustering(self.encoder(x))
        return out.loss, out.targets


def _batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(sum(LOCAL_BATCHES), INPUT_SIZE, generator=g) for _ in range(STEPS)]


def _train(model: nn.Module, batches: list[torch.Tensor]) -> tuple[list[float], list[torch.Tensor]]:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses, targets = [], []
    for x in batches:
        optimizer.zero_grad()
        loss, target = model(x)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        targets.append(target.detach())
    return losses, targets


def _clustering_worker(rank_: int, init_file: str, out_dir: str) -> None:
    with gloo_group(rank_, len(LOCAL_BATCHES), init_file):
        start = sum(LOCAL_BATCHES[:rank_])
        stop = start + LOCAL_BATCHES[rank_]
        model = DistributedDataParallel(_Model(distributed=True))
        losses, targets = _train(model, [x[start:stop] for x in _batches()])
        inner = model.module
        torch.save(
            {
                "losses": losses,
                "targets": targets,
                "prototypes": inner.clustering.prototypes.detach(),
                "encoder": inner.encoder.weight.detach(),
                "step": int(inner.clustering.step),
            },
            os.path.join(out_dir, f"clustering{rank_}.pt"),
        )
        del model, inner  # the DDP wrapper must go before the group does (see _gloo.py)


def test_distributed_clustering_equals_the_concatenated_batch():
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        spawn(_clustering_worker, (init_file, tmp), len(LOCAL_BATCHES), init_file)
        results = [
            torch.load(os.path.join(tmp, f"clustering{r}.pt")) for r in range(len(LOCAL_BATCHES))
        ]
    single = _Model(distributed=False)
    losses, targets = _train(single, _batches())
    first, second = results
    # Identical on both ranks (DDP averaged the gradients of identical replicas).
    assert torch.equal(first["prototypes"], second["prototypes"])
    assert torch.equal(first["encoder"], second["encoder"])
    assert first["step"] == second["step"] == STEPS
    # ... and equal to one process on the concatenated batches.
    torch.testing.assert_close(first["prototypes"], single.clustering.prototypes.detach(),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first["encoder"], single.encoder.weight.detach(),
                               rtol=1e-5, atol=1e-6)
    for step in range(STEPS):
        # The targets equipartition the global batch ...
        torch.testing.assert_close(
            torch.cat([first["targets"][step], second["targets"][step]]), targets[step],
            rtol=1e-5, atol=1e-6,
        )
        # ... and the mean of the ranks' losses is the global-batch mean.
        mean = (first["losses"][step] + second["losses"][step]) / 2
        assert mean == pytest.approx(losses[step], rel=1e-5, abs=1e-6)
    # The prototypes did move: the test would notice a run without updates.
    assert not torch.allclose(first["prototypes"], _Model(distributed=False).clustering.prototypes)
