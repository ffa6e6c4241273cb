"""Checkpoint conversion between ``SASRecEncoder`` and the public S3-Rec / CoSeRec / ICLRec code.

The SASRec of that code (``src/models.py`` / ``src/modules.py``) names its parameters
``item_embeddings``, ``position_embeddings``, ``LayerNorm`` and
``item_encoder.layer.N.{attention,intermediate}.*``; ``SASRecEncoder`` uses the same names, so
conversion is an identity mapping of keys plus what a state dict does not say outright: the
number of items (rows of the item table minus padding and mask id), the hidden size, the
longest sequence and the number of layers are read from the shapes and keys, and every
tensor's shape is checked before anything is loaded.

``SASRecEncoder.from_iclrec_state_dict`` and ``SASRecEncoder.to_iclrec_state_dict`` are thin
wrappers over the two functions here.

Examples:
    >>> from s4rec_components import SASRecEncoder
    >>> from s4rec_components.iclrec import (
    ...     encoder_to_iclrec_state_dict, iclrec_to_encoder_state_dict)
    >>> source = SASRecEncoder(9, hidden_size=8, num_layers=2, max_len=6)
    >>> checkpoint = {"model": encoder_to_iclrec_state_dict(source), "optimizer": {}}
    >>> state, shapes = iclrec_to_encoder_state_dict(checkpoint)
    >>> shapes
    ICLRecShapes(num_items=9, hidden_size=8, num_layers=2, max_len=6)
    >>> copy = SASRecEncoder(9, hidden_size=8, num_layers=2, max_len=6)
    >>> copy.load_state_dict(state)
    <All keys matched successfully>
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import Tensor

from ._validation import check_tensor
from .encoder import FFN_EXPANSION, NUM_SPECIAL_ROWS, SASRecEncoder

__all__ = ["ICLRecShapes", "encoder_to_iclrec_state_dict", "iclrec_to_encoder_state_dict"]

logger = logging.getLogger(__name__)

NESTING_KEYS = ("model", "state_dict")
"""Keys under which a training checkpoint may nest the model's state dict."""
DATA_PARALLEL_PREFIX = "module."
"""Prefix that ``nn.DataParallel`` / DDP put in front of every key; stripped when on all keys."""

_EMBEDDING_KEYS = (
    "item_embeddings.weight",
    "position_embeddings.weight",
    "LayerNorm.weight",
    "LayerNorm.bias",
)
_LAYER_PREFIX = "item_encoder.layer."


class ICLRecShapes(NamedTuple):
    """The sizes a SASRec state dict implies (the constructor arguments it fixes).

    Examples:
        >>> from s4rec_components import SASRecEncoder, iclrec_to_encoder_state_dict
        >>> saved = SASRecEncoder(10, max_len=5, num_layers=1).state_dict()
        >>> state, shapes = iclrec_to_encoder_state_dict(saved)
        >>> shapes
        ICLRecShapes(num_items=10, hidden_size=64, num_layers=1, max_len=5)
        >>> encoder = SASRecEncoder(**shapes._asdict())  # the constructor arguments it fixes
        >>> encoder.load_state_dict(state)
        <All keys matched successfully>
    """

    num_items: int
    """Real items ``n``: rows of ``item_embeddings.weight`` minus 2 (padding and mask id)."""
    hidden_size: int
    """Hidden size ``d``."""
    num_layers: int
    """Transformer blocks (``item_encoder.layer.N``)."""
    max_len: int
    """Rows of ``position_embeddings.weight``."""


def _layer_shapes(d: int) -> dict[str, tuple[int, ...]]:
    """Expected shape of every per-layer tensor, keyed by its name under ``layer.N.``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("query", "key", "value", "dense"):
        shapes[f"attention.{name}.weight"] = (d, d)
        shapes[f"attention.{name}.bias"] = (d,)
    for norm in ("attention.LayerNorm", "intermediate.LayerNorm"):
        shapes[f"{norm}.weight"] = (d,)
        shapes[f"{norm}.bias"] = (d,)
    shapes["intermediate.dense_1.weight"] = (FFN_EXPANSION * d, d)
    shapes["intermediate.dense_1.bias"] = (FFN_EXPANSION * d,)
    shapes["intermediate.dense_2.weight"] = (d, FFN_EXPANSION * d)
    shapes["intermediate.dense_2.bias"] = (d,)
    return shapes


def _describe(value: object) -> str:
    """Shape of a tensor, or the type of anything else, for error messages."""
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def _unwrap_state_dict(state_dict: object) -> Mapping[str, Any]:
    """Accept a flat state dict, one nested under "model"/"state_dict", or a DataParallel one."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}"
        )
    state: Mapping[str, Any] = state_dict
    flat_keys = ("item_embeddings.weight", f"{DATA_PARALLEL_PREFIX}item_embeddings.weight")
    if not any(key in state for key in flat_keys):
        for key in NESTING_KEYS:
            nested = state.get(key)
            if isinstance(nested, Mapping):
                state = nested
                break
    odd = [key for key in state if not isinstance(key, str)]
    if odd:  # no SASRec entry: dropped as any other extra
        logger.debug("iclrec_to_encoder_state_dict ignores %d keys that are not strings: %s", len(odd), odd)
        state = {key: value for key, value in state.items() if isinstance(key, str)}
    if state and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        state = {key[len(DATA_PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return state


def iclrec_to_encoder_state_dict(
    state_dict: Mapping[str, Any],
) -> tuple[dict[str, Tensor], ICLRecShapes]:
    """Check an ICLRec-family SASRec state dict and return what ``SASRecEncoder`` loads.

    Accepts the flat ``model.state_dict()`` the public code saves, a dict nested under
    ``"model"`` or ``"state_dict"``, and keys all prefixed with ``"module."`` (DataParallel /
    DDP). Keys outside the encoder (heads a trainer saved, ``criterion.*``) are dropped and
    logged at DEBUG level. Nothing is copied: the returned dict holds the input's tensors.

    Args:
        state_dict: the checkpoint mapping.

    Returns:
        ``(state, shapes)``: the encoder's keys only, ready for
        ``SASRecEncoder(...).load_state_dict(state)``, and the sizes they imply.

    Raises:
        TypeError: if ``state_dict`` is not a mapping or an embedding entry is not a tensor.
        ValueError: if required keys are missing or a tensor has the wrong shape (the message
            names them), or there are no transformer layers.

    Examples:
        >>> import torch
        >>> from s4rec_components import SASRecEncoder
        >>> from s4rec_components.iclrec import iclrec_to_encoder_state_dict
        >>> saved = SASRecEncoder(4, hidden_size=8, num_layers=1, max_len=5).state_dict()
        >>> saved = {f"module.{k}": v for k, v in saved.items()}  # a DataParallel checkpoint
        >>> state, shapes = iclrec_to_encoder_state_dict(saved)
        >>> shapes.num_items, shapes.max_len, "item_embeddings.weight" in state
        (4, 5, True)
    """
    state = _unwrap_state_dict(state_dict)
    missing = [key for key in _EMBEDDING_KEYS if key not in state]
    if missing:
        raise ValueError(f"state_dict is missing the SASRec keys {missing}")
    for key in _EMBEDDING_KEYS:
        check_tensor(state[key], f"state_dict[{key!r}]")

    items = state["item_embeddings.weight"]
    if items.ndim != 2 or items.shape[0] < NUM_SPECIAL_ROWS + 1:
        raise ValueError(
            "state_dict['item_embeddings.weight'] must have shape (n + 2, d) with n >= 1, "
            f"got shape {tuple(items.shape)}"
        )
    num_items, d = items.shape[0] - NUM_SPECIAL_ROWS, items.shape[1]
    positions = state["position_embeddings.weight"]
    if positions.ndim != 2 or positions.shape[1] != d or positions.shape[0] < 1:
        raise ValueError(
            f"state_dict['position_embeddings.weight'] must have shape (max_len, {d}), got "
            f"shape {tuple(positions.shape)}"
        )

    layer_ids = set()
    for key in state:
        if key.startswith(_LAYER_PREFIX):
            index = key[len(_LAYER_PREFIX) :].split(".", 1)[0]
            if index.isdigit():
                layer_ids.add(int(index))
    if not layer_ids:
        raise ValueError(f"state_dict has no '{_LAYER_PREFIX}N.*' keys (no transformer layers)")
    num_layers = max(layer_ids) + 1

    expected: dict[str, tuple[int, ...]] = {
        key: (d,) for key in ("LayerNorm.weight", "LayerNorm.bias")
    }
    expected["item_embeddings.weight"] = tuple(items.shape)
    expected["position_embeddings.weight"] = tuple(positions.shape)
    for layer in range(num_layers):
        for name, shape in _layer_shapes(d).items():
            expected[f"{_LAYER_PREFIX}{layer}.{name}"] = shape
    missing = [key for key in expected if key not in state]
    if missing:
        raise ValueError(f"state_dict is missing the SASRec keys {missing}")
    bad = [
        f"{key}: expected {shape}, got {_describe(state[key])}"
        for key, shape in expected.items()
        if not isinstance(state[key], Tensor) or tuple(state[key].shape) != shape
    ]
    if bad:
        raise ValueError("state_dict has tensors of the wrong shape: " + "; ".join(bad))
    ignored = sorted(set(state) - set(expected))
    if ignored:
        logger.debug("iclrec_to_encoder_state_dict ignores %d keys: %s", len(ignored), ignored)
    shapes = ICLRecShapes(num_items, d, num_layers, positions.shape[0])
    return {key: state[key] for key in expected}, shapes


def encoder_to_iclrec_state_dict(encoder: SASRecEncoder) -> dict[str, Tensor]:
    """The encoder's parameters under ICLRec's key names, as detached copies.

    The result loads into the public code's ``SASRecModel`` with ``load_state_dict`` (its
    ``criterion`` holds no parameters), and back with ``iclrec_to_encoder_state_dict``.

    Args:
        encoder: a ``SASRecEncoder``.

    Returns:
        A flat ``{name: tensor}`` dict.

    Raises:
        TypeError: if ``encoder`` is not a ``SASRecEncoder`` (any other module, e.g. an
            ``nn.Linear``, would give a dict that is not an ICLRec state dict).

    Examples:
        >>> from s4rec_components import SASRecEncoder
        >>> from s4rec_components.iclrec import encoder_to_iclrec_state_dict
        >>> state = encoder_to_iclrec_state_dict(SASRecEncoder(5, hidden_size=4, num_layers=1))
        >>> state["item_embeddings.weight"].shape, len(state)
        (torch.Size([7, 4]), 20)
    """
    if not isinstance(encoder, SASRecEncoder):
        raise TypeError(f"encoder must be a SASRecEncoder, got {type(encoder).__name__}")
    return {key: value.detach().clone() for key, value in encoder.state_dict().items()}
