"""ICLRec checkpoint conversion: round trips, nesting, DataParallel keys, shape errors."""

from __future__ import annotations

import pytest
import torch
from test_encoder import random_iclrec_state, random_ids, small_encoder

from s4rec_components import SASRecEncoder
from s4rec_components.iclrec import (
    ICLRecShapes,
    encoder_to_iclrec_state_dict,
    iclrec_to_encoder_state_dict,
)

# --------------------------------------------------------------------------------------------
# State dicts
# --------------------------------------------------------------------------------------------


def test_round_trip_through_iclrec_state_dict():
    source = small_encoder(seed=1, num_layers=3).eval()
    state = source.to_iclrec_state_dict()
    expected_keys = set(random_iclrec_state(12, 8, 3, 7, seed=0))
    assert set(state) == expected_keys
    copy = SASRecEncoder.from_iclrec_state_dict(state, num_heads=2).eval()
    for key, value in copy.to_iclrec_state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    ids = random_ids(3, 7, 12, seed=2)
    torch.testing.assert_close(copy(ids), source(ids), rtol=0, atol=0)


def test_state_dict_is_a_detached_copy():
    encoder = small_encoder()
    state = encoder.to_iclrec_state_dict()
    state["LayerNorm.weight"].add_(1.0)
    assert not state["LayerNorm.weight"].requires_grad
    assert torch.equal(encoder.LayerNorm.weight, torch.ones(8))


def test_from_state_dict_reads_reference_values_exactly():
    state = random_iclrec_state(5, 4, num_layers=2, max_len=3, seed=7, dtype=torch.float32)
    encoder = SASRecEncoder.from_iclrec_state_dict(state, num_heads=1)
    assert encoder.item_embeddings.weight.dtype == torch.float32
    double = SASRecEncoder.from_iclrec_state_dict({k: v.double() for k, v in state.items()})
    assert all(p.dtype == torch.float64 for p in double.parameters())  # the checkpoint's dtype
    out = encoder.to_iclrec_state_dict()
    assert set(out) == set(state)
    for key in state:
        assert torch.equal(out[key], state[key]), key


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module", "model+module"])
def test_from_state_dict_accepts_nested_and_dataparallel_checkpoints(wrap):
    state = small_encoder().to_iclrec_state_dict()
    if "module" in wrap:
        state = {f"module.{k}": v for k, v in state.items()}
    if wrap.startswith("model"):
        state = {"model": state, "optimizer": {"lr": 1e-3}}
    elif wrap == "state_dict":
        state = {"state_dict": state, "epoch": 4}
    encoder = SASRecEncoder.from_iclrec_state_dict(state, num_heads=2)
    assert (encoder.num_items, encoder.hidden_size, encoder.num_layers, encoder.max_len) == (
        12, 8, 2, 7,
    )


def test_from_state_dict_passes_constructor_options():
    state = small_encoder().to_iclrec_state_dict()
    encoder = SASRecEncoder.from_iclrec_state_dict(
        state, num_heads=4, dropout=0.1, attention_dropout=0.3
    )
    assert encoder.num_heads == 4 and encoder.dropout.p == 0.1
    assert encoder.attention_dropout == 0.3


def test_from_state_dict_errors():
    state = small_encoder().to_iclrec_state_dict()
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        SASRecEncoder.from_iclrec_state_dict([1, 2])
    for key in ("item_embeddings.weight", "LayerNorm.bias"):
        broken = {k: v for k, v in state.items() if k != key}
        with pytest.raises(ValueError, match=f"missing.*{key}"):
            SASRecEncoder.from_iclrec_state_dict(broken)
    key = "item_encoder.layer.1.intermediate.dense_2.bias"
    broken = {k: v for k, v in state.items() if k != key}
    with pytest.raises(ValueError, match=f"missing.*{key}"):
        SASRecEncoder.from_iclrec_state_dict(broken)
    # a gap in the layer numbering is a missing layer
    broken = {k: v for k, v in state.items() if not k.startswith("item_encoder.layer.0.")}
    with pytest.raises(ValueError, match="item_encoder.layer.0.attention.query.weight"):
        SASRecEncoder.from_iclrec_state_dict(broken)
    no_layers = {k: v for k, v in state.items() if not k.startswith("item_encoder.")}
    with pytest.raises(ValueError, match="no transformer layers"):
        SASRecEncoder.from_iclrec_state_dict(no_layers)
    bad = dict(state)
    bad["item_encoder.layer.0.intermediate.dense_1.weight"] = torch.zeros(16, 8)
    with pytest.raises(ValueError, match=r"dense_1.weight: expected \(32, 8\), got \(16, 8\)"):
        SASRecEncoder.from_iclrec_state_dict(bad)
    bad = dict(state)
    bad["position_embeddings.weight"] = torch.zeros(7, 5)
    with pytest.raises(ValueError, match="position_embeddings.weight"):
        SASRecEncoder.from_iclrec_state_dict(bad)
    bad = dict(state)
    bad["item_embeddings.weight"] = torch.zeros(2, 8)
    with pytest.raises(ValueError, match=r"\(n \+ 2, d\)"):
        SASRecEncoder.from_iclrec_state_dict(bad)
    bad = dict(state)
    bad["LayerNorm.weight"] = [1.0] * 8
    with pytest.raises(TypeError, match="LayerNorm.weight"):
        SASRecEncoder.from_iclrec_state_dict(bad)
    with pytest.raises(TypeError, match="read from state_dict"):
        SASRecEncoder.from_iclrec_state_dict(state, hidden_size=8)
    with pytest.raises(ValueError, match="divisible"):
        SASRecEncoder.from_iclrec_state_dict(state, num_heads=3)




# --------------------------------------------------------------------------------------------
# The functions behind the wrappers
# --------------------------------------------------------------------------------------------


def test_iclrec_to_encoder_state_dict_reads_shapes_and_drops_extra_keys():
    state = random_iclrec_state(num_items=6, d=4, num_layers=2, max_len=5, seed=0)
    checkpoint = {"model": {**state, "projection.0.weight": torch.zeros(2, 2)}, "epoch": 7}
    converted, shapes = iclrec_to_encoder_state_dict(checkpoint)
    assert shapes == ICLRecShapes(num_items=6, hidden_size=4, num_layers=2, max_len=5)
    assert set(converted) == set(state)
    assert all(converted[key] is state[key] for key in state)  # no copies
    encoder = SASRecEncoder(6, hidden_size=4, num_layers=2, max_len=5).double()
    encoder.load_state_dict(converted)  # strict: exactly the encoder's keys


@pytest.mark.parametrize("prefix", ["", "module."])
def test_keys_that_are_not_strings_are_dropped_as_extra_keys(prefix):
    """A non-string key is no SASRec entry: dropped like any other, never an AttributeError
    (review of 2026-12-06)."""
    state = random_iclrec_state(num_items=6, d=4, num_layers=1, max_len=5, seed=1)
    checkpoint = {7: torch.zeros(1), **{prefix + key: value for key, value in state.items()}, None: "x"}
    converted, shapes = iclrec_to_encoder_state_dict(checkpoint)
    assert set(converted) == set(state) and shapes.num_layers == 1


def test_encoder_to_iclrec_state_dict_is_the_wrappers_result():
    encoder = small_encoder()
    direct = encoder_to_iclrec_state_dict(encoder)
    wrapped = encoder.to_iclrec_state_dict()
    assert set(direct) == set(wrapped)
    for key in direct:
        assert torch.equal(direct[key], wrapped[key])
    with pytest.raises(TypeError, match="encoder must be a SASRecEncoder, got dict"):
        encoder_to_iclrec_state_dict({"item_embeddings.weight": torch.zeros(3, 2)})


def test_encoder_to_iclrec_state_dict_refuses_other_modules():
    # G-3: any other module used to give its own state dict as an "ICLRec state dict"
    for module in (torch.nn.Linear(2, 2), torch.nn.Sequential(small_encoder())):
        with pytest.raises(TypeError, match="encoder must be a SASRecEncoder, got"):
            encoder_to_iclrec_state_dict(module)


def test_from_iclrec_state_dict_keeps_compute_options():
    state = small_encoder().to_iclrec_state_dict()
    encoder = SASRecEncoder.from_iclrec_state_dict(state, padding_attention="iclrec")
    assert encoder.padding_attention == "iclrec" and encoder.compute_path == "dense"
    encoder = SASRecEncoder.from_iclrec_state_dict(state, compute_path="packed")
    assert encoder.compute_path == "packed"
    with pytest.raises(TypeError, match="positional"):
        SASRecEncoder.from_iclrec_state_dict(state, 2)
