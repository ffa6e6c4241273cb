"""One versioned checkpoint format, one loader, and atomic writes.

A checkpoint is a dict of tensors, numbers and strings only, so it is always read with
``torch.load(..., weights_only=True)`` (a file holding a pickled object with a ``__reduce__``
payload is refused, never executed)::

    {"format": "s4rec-example", "version": 1,
     "config": <TrainConfig as JSON>, "num_items": n, "item_ids": <JSON list or "null">,
     "epoch": e, "model": state_dict,
     # resume state, in last.pt only:
     "optimizer": state_dict, "rng": {"torch": uint8 tensor, "generator": uint8 tensor, ...},
     "state": <JSON: history, best, bad_epochs>}

``best.pt`` (the best model by valid NDCG@20) and ``last.pt`` (everything needed to resume)
share the format; every loader here reads both. Every file is written to a temporary file in
the same folder, flushed, fsynced and renamed over the target (``os.replace``), so a kill at
any moment leaves either the old or the new file, never a truncated one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .model import S4RecModel, build_model

__all__ = [
    "FORMAT",
    "VERSION",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "changed_settings",
    "check_plain_tensor",
    "check_weights_fit",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]

FORMAT = "s4rec-example"
VERSION = 1
_SLOW_WRITES_ENV = "S4REC_EXAMPLE_SLOW_WRITES"  # tests: seconds to pause inside every write


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this example (or of this version)."""


def _pause_for_tests() -> None:
    delay = os.environ.get(_SLOW_WRITES_ENV)
    if delay:
        time.sleep(float(delay))


def _file_mode(path: Path) -> int:
    """The existing file's permission bits, or a new file's: ``0o666`` less the umask."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)  # read by setting it, then put back
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.
    The file keeps ``path``'s permission bits, or gets a new file's (``0o666`` less the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp's 0o600 would otherwise replace the file's bits
        with os.fdopen(fd, "wb") as handle:
            half = len(payload) // 2
            handle.write(payload[:half])
            _pause_for_tests()  # a kill here leaves only the temp file
            handle.write(payload[half:])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass
class Checkpoint:
    """A checkpoint read back: the run's configuration, the model weights, and resume state if any."""

    config: TrainConfig
    num_items: int
    item_ids: list[str] | None
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    intent_centroids: torch.Tensor | None = None  # raw (k, d) k-means centroids of the last epoch (warm start)

    @property
    def resumable(self) -> bool:
        return self.optimizer is not None


def save_checkpoint(
    path: str | Path,
    model: S4RecModel,
    config: TrainConfig,
    *,
    epoch: int,
    item_ids: list[str] | None,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    state: dict[str, Any] | None = None,
    intent_centroids: torch.Tensor | None = None,
) -> None:
    """Write a checkpoint atomically (resume state when ``optimizer`` is given; with it the last
    epoch's k-means centroids, which a warm-started k-means continues from)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_json(),
        "num_items": model.num_items,
        "item_ids": json.dumps(item_ids),
        "epoch": epoch,
        "model": model.state_dict(),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
        payload["rng"] = dict(rng or {})
        payload["state"] = json.dumps(state or {})
        if intent_centroids is not None:
            payload["intent_centroids"] = intent_centroids.detach()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (``best.pt`` or ``last.pt``).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is not a tensor-only checkpoint of this format and version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    payload = load_tensor_file(
        path, map_location, hint="files of the public ICLRec code are read with evaluate.py --iclrec-checkpoint"
    )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an s4rec-example checkpoint (no format tag {FORMAT!r}); files of the public "
            "ICLRec code are read with evaluate.py --iclrec-checkpoint"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r}, this code reads {VERSION}")
    try:
        config = TrainConfig.from_dict(json.loads(payload["config"]))
        item_ids = json.loads(payload["item_ids"])
        if item_ids is not None and not (isinstance(item_ids, list) and all(isinstance(i, str) for i in item_ids)):
            raise ValueError("item_ids must be a list of strings or null")
        checkpoint = Checkpoint(
            config=config,
            num_items=_count(payload["num_items"], "num_items"),
            item_ids=item_ids,
            epoch=_count(payload["epoch"], "epoch"),
            model=_weights(payload["model"]),
        )
        if "optimizer" in payload:
            checkpoint.optimizer = payload["optimizer"]
            checkpoint.rng = dict(payload["rng"])
            checkpoint.state = json.loads(payload["state"])
            centroids = payload.get("intent_centroids")
            if centroids is not None:
                check_plain_tensor(centroids, "intent_centroids")
                if not (centroids.ndim == 2 and centroids.is_floating_point()):
                    raise ValueError("intent_centroids must be a finite (k, d) float tensor")
                checkpoint.intent_centroids = centroids
    except (KeyError, TypeError, ValueError, RuntimeError, RecursionError) as err:  # RecursionError: json nested too deep
        raise CheckpointError(f"{path}: malformed s4rec-example checkpoint ({type(err).__name__}: "
                              f"{str(err)[:200]})") from None
    return checkpoint


def _count(value: object, name: str) -> int:
    """A recorded count: an int >= 0 (a float, inf or a string is a forged file)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}"[:200])
    return value


_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_PLAIN_DTYPES = frozenset({*_FLOATS, torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


def check_plain_tensor(tensor: object, name: str) -> torch.Tensor:
    """``tensor`` as this example writes them: a dense tensor with values (not ``meta``), of a
    real float, integer or bool dtype, finite when it is a float (a NaN model would train a
    whole epoch, or be tested, before anything noticed). Raises ``ValueError`` naming ``name``."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if tensor.layout != torch.strided or tensor.device.type == "meta" or tensor.dtype not in _PLAIN_DTYPES:
        raise ValueError(f"{name} must be a dense real tensor with values, got {tensor.dtype} "
                         f"({tensor.layout}, on {tensor.device.type})")
    if tensor.dtype in _FLOATS and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return tensor


def _weights(value: object) -> dict[str, torch.Tensor]:
    """The recorded weights: a dict of names to plain, finite tensors (:func:`check_plain_tensor`)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("model must map parameter names to tensors")
    return {name: check_plain_tensor(tensor, f"weight {name[:80]!r}") for name, tensor in value.items()}


MAY_DIFFER_ON_RESUME = frozenset({"device", "eval_batch_size", "data_root"})
"""Settings that a resumed run may change (where and in what batches it scores, and where a named
dataset is looked up: the data itself is checked by its content; not what it trains)."""


def changed_settings(given: TrainConfig, stored: TrainConfig) -> list[str]:
    """The names of the settings in which two configurations of one run differ, in order, leaving
    out :data:`MAY_DIFFER_ON_RESUME`."""
    a, b = given.to_dict(), stored.to_dict()
    return [k for k in sorted(set(a) | set(b)) if k not in MAY_DIFFER_ON_RESUME and a.get(k) != b.get(k)]


def atomic_savefig(fig: Any, path: str | Path, **kwargs: Any) -> None:
    """``fig.savefig`` through :func:`atomic_write_bytes`: a kill never leaves a truncated figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def load_tensor_file(path: str | Path, map_location: Any = "cpu", *, hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)``; a file that is not tensors and plain containers
    is one ``CheckpointError`` naming it, and is never unpickled."""
    try:
        with warnings.catch_warnings():  # a bare pickle: torch warns about its protocol, then refuses it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # the safe unpickler met a reference to a Python class or function
            reason = "it holds Python objects beyond tensors, which only a full unpickle (able to run code) would load"
        else:  # it stopped at the first bytes: JSON, text, a bare pickle, ...
            reason = "it is not a checkpoint written by torch.save (another kind of file, or damaged)"
    except Exception as err:  # RuntimeError for broken zips, EOFError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        reason = f"damaged or not a torch file ({type(err).__name__}: {first[:160]})"
    raise CheckpointError(f"{path}: refused, {reason}" + (f"; {hint}" if hint else ""))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[S4RecModel, Checkpoint]:
    """The model of a checkpoint, rebuilt with :func:`build_model`, on ``device``, in eval mode.

    The item table's size is compared with the recorded item count before the model is built
    (a forged count cannot make it allocate), and weights that do not fit the model are one
    ``CheckpointError`` naming the file.
    """
    checkpoint = load_checkpoint(path)
    check_weights_fit(path, checkpoint)  # before anything of the settings' size is allocated
    model = build_model(checkpoint.config, checkpoint.num_items)
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as err:  # missing / unexpected keys, wrong shapes
        first = str(err).strip().splitlines()
        raise CheckpointError(f"{path}: its weights do not fit the model of its settings ({' '.join(first)[:300]})") from None
    return model.to(device).eval(), checkpoint


def check_weights_fit(path: str | Path, checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint whose weights are not those of the model its settings build.

    The item table must hold ``num_items + 2`` rows (checked first, for a message that names the
    count; the shape comparison below would refuse it too). Then the model of the checkpoint's
    settings, built on the ``meta`` device (no memory), must have exactly the weights' names and
    shapes, so forged sizes (``hidden_size = 2**40``) fail as one ``CheckpointError`` instead of
    an allocation.
    ``num_layers`` is bounded first by the number of weights (every layer has some), so that the
    meta build itself stays small.
    """
    config, weights = checkpoint.config, checkpoint.model
    table = weights.get("encoder.item_embeddings.weight")
    if not isinstance(table, torch.Tensor) or table.ndim != 2 or table.shape[0] != checkpoint.num_items + 2:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else None
        raise CheckpointError(
            f"{path}: its item table (shape {shape}) does not hold num_items + 2 = {checkpoint.num_items + 2} rows"
        )
    if config.num_layers > len(weights):
        raise CheckpointError(f"{path}: its settings ask for {config.num_layers} layers, more than its "
                              f"{len(weights)} weights could hold")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build_model(config, checkpoint.num_items).state_dict().items()}
    except (ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: its settings do not make a model ({str(err)[:200]})") from None
    found = {k: tuple(v.shape) for k, v in weights.items()}
    for name in sorted(set(shapes) | set(found)):
        if shapes.get(name) != found.get(name):
            raise CheckpointError(
                f"{path}: its weights do not fit the model of its settings ({name}: shape {found.get(name)} in "
                f"the file, {shapes.get(name)} expected)"
            )
