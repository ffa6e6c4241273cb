"""No host synchronisation inside a training step on a GPU (issue 8).

Runs a few training steps of every preset of the reference example, exactly as its loop takes
them (negative sampling, forward with the augmentations and every loss term, backward,
``Adam.step`` of the loop's ``make_optimizer``, fused on a GPU), with
``s4rec_components.set_validate_args(False)`` and under ``torch.cuda.set_sync_debug_mode("error")``: any operation that makes the host wait for the
device (``.item()``, ``nonzero``, boolean-mask indexing, ``bool(tensor)``, a copy to the CPU)
raises ``RuntimeError`` and fails the test. Warm-up steps (lazy CUDA initialisation, the first
step with the value checks on, as the loop does) run before the mode is switched on.

Skipped without CUDA.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "s4rec"))

import s4rec_components  # noqa: E402
from s4rec_example.config import PRESETS, TrainConfig  # noqa: E402
from s4rec_example.data import load_dataset, prepare  # noqa: E402
from s4rec_example.intents import fit_intents  # noqa: E402
from s4rec_example.loop import make_optimizer  # noqa: E402
from s4rec_example.model import build_model  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TINY = dict(synthetic_users=200, synthetic_items=120, max_len=20, hidden_size=32, batch_size=64,
            num_prototypes=16, num_intents=8, kmeans_iters=3, kmeans_redo=1, eval_batch_size=128)
SYNC_FREE_STEPS = 3


@contextlib.contextmanager
def sync_debug_errors() -> Iterator[None]:
    """Validation off and host syncs raising; both restored afterwards whatever happens."""
    previous = s4rec_components.validate_args_enabled()
    s4rec_components.set_validate_args(False)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)
        s4rec_components.set_validate_args(previous)


def _trainer(preset: str, loss: str, device: torch.device) -> tuple[Callable[[int], None], dict[str, torch.Tensor]]:
    config = TrainConfig.from_preset(preset, loss=loss, device=device.type, **TINY)
    torch.manual_seed(0)
    data = prepare(load_dataset(config), config, device)
    model = build_model(config, data.num_items).to(device).train()
    optimizer = make_optimizer(model, config, device)  # fused Adam on a GPU, as the loop
    generator = torch.Generator(device=device).manual_seed(0)
    intents = None
    if model.uses_intents:
        intents = fit_intents(model, data.split.train_inputs, num_intents=config.num_intents,
                              num_iters=config.kmeans_iters, seed=0, batch_size=config.eval_batch_size)
    order = torch.randperm(data.num_users, device=device, generator=generator)
    steps = data.num_users // config.batch_size
    sums: dict[str, torch.Tensor] = {}

    def step(i: int) -> None:
        """The body of ``s4rec_example.loop.train_epoch`` for batch ``i``."""
        idx = order[(i % steps) * config.batch_size : (i % steps + 1) * config.batch_size]
        inputs = data.split.train_inputs[idx]
        negatives = data.sampler(idx, inputs.shape[1], generator) if loss == "bce" else None
        terms = model(inputs, data.split.train_targets[idx], negatives=negatives,
                      head_labels=data.heads[idx], intents=intents, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        for key, value in terms.items():
            sums[key] = sums[key] + value.detach() if key in sums else value.detach()

    return step, sums


def _cases() -> list[object]:
    return [pytest.param(preset, loss, id=f"{preset}-{loss}") for preset in PRESETS for loss in ("bce", "ce")]


@pytest.mark.parametrize(("preset", "loss"), _cases())
def test_training_steps_never_wait_for_the_device(preset: str, loss: str) -> None:
    step, sums = _trainer(preset, loss, torch.device("cuda"))
    previous = s4rec_components.validate_args_enabled()
    try:
        step(0)  # as the loop: the first step with the value checks on (and lazy CUDA set-up)
        s4rec_components.set_validate_args(False)
        step(1)
    finally:
        s4rec_components.set_validate_args(previous)
    with sync_debug_errors():
        for i in range(2, 2 + SYNC_FREE_STEPS):
            step(i)
    torch.cuda.synchronize()
    assert set(sums) >= {"loss", "sr"}
    assert all(bool(torch.isfinite(v)) for v in sums.values())


def test_sync_debug_mode_catches_a_host_read() -> None:
    """The mode is really on: a boolean-mask index (a host read of the count) raises."""
    x = torch.arange(10, device="cuda")
    with sync_debug_errors(), pytest.raises(RuntimeError, match="synchroniz"):
        x[x > 4]
