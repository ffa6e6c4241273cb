"""SASRecEncoder: the ICLRec reference, causality, padding, state dicts, helpers, bad inputs."""

from __future__ import annotations

import math
from contextlib import contextmanager

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from strategies import float_tensors, left_padded_sequences, long_tensors, seeds
from torch.overrides import TorchFunctionMode

import s4rec_components.encoder as encoder_module
from s4rec_components import POOLINGS, SASRecEncoder, set_validate_args
from s4rec_components.encoder import sasrec_attention_mask

REFERENCE_MASK_VALUE = -10000.0  # the additive mask of the public S3-Rec / CoSeRec / ICLRec code
ICLREC_EPS = 1e-12
HEAD_CONFIGS = [(2, 1), (2, 2), (4, 2), (6, 3), (8, 4)]  # (hidden_size, num_heads)


# --------------------------------------------------------------------------------------------
# Slow reference, transcribed from the public code's formulas (src/models.py, src/modules.py)
# --------------------------------------------------------------------------------------------


def ref_layer_norm(x, weight, bias, eps=ICLREC_EPS):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return weight * (x - mean) / torch.sqrt(var + eps) + bias


def ref_gelu(x):
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_linear(x, state, name):
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def iclrec_reference(state, ids, num_heads):
    """Eval-mode SASRecModel.forward of the public code, one (sequence, head, query) at a time."""
    b, l = ids.shape
    d = state["item_embeddings.weight"].shape[1]
    e = d // num_heads
    num_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("item_encoder.layer."))
    # extended attention mask: (1 - key_real * subsequent) * -10000
    additive = torch.zeros(b, l, l, dtype=torch.float64)
    for s in range(b):
        for i in range(l):
            for j in range(l):
                visible = j <= i and int(ids[s, j]) > 0
                additive[s, i, j] = 0.0 if visible else REFERENCE_MASK_VALUE
    x = state["item_embeddings.weight"][ids] + state["position_embeddings.weight"][:l]
    x = ref_layer_norm(x, state["LayerNorm.weight"], state["LayerNorm.bias"])
    for n in range(num_layers):
        p = f"item_encoder.layer.{n}."
        q = ref_linear(x, state, p + "attention.query")
        k = ref_linear(x, state, p + "attention.key")
        v = ref_linear(x, state, p + "attention.value")
        context = torch.zeros_like(x)
        for s in range(b):
            for h in range(num_heads):
                cols = slice(h * e, (h + 1) * e)
                for i in range(l):
                    scores = torch.stack(
                        [(q[s, i, cols] * k[s, j, cols]).sum() / math.sqrt(e) for j in range(l)]
                    )
                    scores = scores + additive[s, i]
                    probs = torch.exp(scores - scores.max())
                    probs = probs / probs.sum()
                    context[s, i, cols] = sum(probs[j] * v[s, j, cols] for j in range(l))
        attn = ref_linear(context, state, p + "attention.dense")
        x = ref_layer_norm(
            attn + x, state[p + "attention.LayerNorm.weight"], state[p + "attention.LayerNorm.bias"]
        )
        ffn = ref_linear(ref_gelu(ref_linear(x, state, p + "intermediate.dense_1")), state,
                         p + "intermediate.dense_2")
        x = ref_layer_norm(
            ffn + x,
            state[p + "intermediate.LayerNorm.weight"],
            state[p + "intermediate.LayerNorm.bias"],
        )
    return x


def random_iclrec_state(num_items, d, num_layers, max_len, seed, dtype=torch.float64):
    """A state dict under ICLRec's key names with random (not initial) weights."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.5, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=dtype) * scale + shift

    state = {
        "item_embeddings.weight": rnd(num_items + 2, d),
        "position_embeddings.weight": rnd(max_len, d),
        "LayerNorm.weight": rnd(d, scale=0.2, shift=1.0),
        "LayerNorm.bias": rnd(d, scale=0.2),
    }
    for n in range(num_layers):
        p = f"item_encoder.layer.{n}."
        for name in ("query", "key", "value", "dense"):
            state[f"{p}attention.{name}.weight"] = rnd(d, d)
            state[f"{p}attention.{name}.bias"] = rnd(d, scale=0.2)
        for norm in ("attention.LayerNorm", "intermediate.LayerNorm"):
            state[f"{p}{norm}.weight"] = rnd(d, scale=0.2, shift=1.0)
            state[f"{p}{norm}.bias"] = rnd(d, scale=0.2)
        state[f"{p}intermediate.dense_1.weight"] = rnd(4 * d, d)
        state[f"{p}intermediate.dense_1.bias"] = rnd(4 * d, scale=0.2)
        state[f"{p}intermediate.dense_2.weight"] = rnd(d, 4 * d)
        state[f"{p}intermediate.dense_2.bias"] = rnd(d, scale=0.2)
    return state


def random_ids(b, l, num_items, seed, pad_prob=0.3):
    """Ids anywhere in [0, num_items + 1] (mask id included), padding at random places."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, num_items + 2, (b, l), generator=g)
    ids[torch.rand(b, l, generator=g) < pad_prob] = 0
    return ids


def small_encoder(seed=0, **kwargs):
    torch.manual_seed(seed)
    config = dict(num_items=12, hidden_size=8, num_layers=2, num_heads=2, max_len=7)
    config.update(kwargs)
    return SASRecEncoder(**config)


@st.composite
def encoder_cases(draw, max_layers=2):
    """(state, num_heads, ids): random ICLRec weights and ids with padding anywhere.

    Shapes and ids are drawn by hypothesis and shrink; the weights come from a drawn seed
    (thousands of floats whose shrinking would tell nothing about a failure).
    """
    d, h = draw(st.sampled_from(HEAD_CONFIGS))
    num_items = draw(st.integers(1, 9))
    max_len = draw(st.integers(1, 6))
    l = draw(st.integers(1, max_len))
    b = draw(st.integers(1, 3))
    layers = draw(st.integers(1, max_layers))
    state = random_iclrec_state(num_items, d, layers, max_len, draw(seeds))
    # ids drawn by hypothesis (they shrink towards padding); padding anywhere, mask id included
    ids = draw(long_tensors((b, l), 0, num_items + 1))
    return state, h, ids


# --------------------------------------------------------------------------------------------
# Agreement with the public code
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compute_path", ["packed", "dense"])
@settings(max_examples=25)
@given(case=encoder_cases())
def test_matches_iclrec_reference_float64(case, compute_path):
    state, heads, ids = case
    encoder = SASRecEncoder.from_iclrec_state_dict(
        state, num_heads=heads, compute_path=compute_path
    ).double().eval()
    real = ids > 0
    with torch.no_grad():
        ours = encoder(ids)
    expected = iclrec_reference(state, ids, heads)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours[real], expected[real], atol=1e-9, rtol=1e-9)
    assert (ours[~real] == 0).all()  # padding_attention="masked": zeros at padding


@settings(max_examples=25)
@given(case=encoder_cases())
def test_iclrec_padding_attention_matches_the_reference_at_every_position(case):
    """ICLRec's additive -10000 mask, padding positions included (future keys for them)."""
    state, heads, ids = case
    encoder = SASRecEncoder.from_iclrec_state_dict(
        state, num_heads=heads, padding_attention="iclrec"
    ).double().eval()
    assert encoder.compute_path == "dense"
    with torch.no_grad():
        ours = encoder(ids)
    torch.testing.assert_close(ours, iclrec_reference(state, ids, heads), atol=1e-9, rtol=1e-9)
    masked = SASRecEncoder.from_iclrec_state_dict(state, num_heads=heads).double().eval()
    real = ids > 0
    with torch.no_grad():
        torch.testing.assert_close(ours[real], masked(ids)[real], atol=1e-12, rtol=1e-12)


@settings(max_examples=20)
@given(case=encoder_cases())
def test_packed_and_dense_paths_agree_everywhere_with_gradients(case):
    state, heads, ids = case
    packed = SASRecEncoder.from_iclrec_state_dict(state, num_heads=heads, compute_path="packed")
    dense = SASRecEncoder.from_iclrec_state_dict(state, num_heads=heads, compute_path="dense")
    packed, dense = packed.double().eval(), dense.double().eval()
    a, b = packed(ids), dense(ids)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert (a[ids == 0] == 0).all()
    weights = torch.linspace(-1.0, 2.0, a.numel(), dtype=torch.float64).reshape(a.shape)
    (a * weights).sum().backward()
    (b * weights).sum().backward()
    for (name, p), q in zip(packed.named_parameters(), dense.parameters()):
        grad_p = torch.zeros_like(p) if p.grad is None else p.grad  # all-padding input: no graph
        grad_q = torch.zeros_like(q) if q.grad is None else q.grad
        torch.testing.assert_close(grad_p, grad_q, atol=1e-10, rtol=1e-8, msg=name)


def test_length_buckets_match_dense_attention_on_long_batches():
    """Rows of every span (1..l, all-padding, holes from mask id 0) in one batch of length 40."""
    torch.manual_seed(0)
    dense = SASRecEncoder(30, hidden_size=8, num_heads=2, max_len=40, compute_path="dense")
    packed = SASRecEncoder(30, hidden_size=8, num_heads=2, max_len=40, compute_path="packed")
    dense, packed = dense.double(), packed.double()
    packed.load_state_dict(dense.state_dict())
    spans = torch.arange(0, 41)
    ids = torch.randint(1, 32, (41, 40))
    ids[torch.arange(40)[None] < (40 - spans)[:, None]] = 0
    ids[5, -2] = 0  # a hole inside a row, as masking with id 0 makes
    torch.testing.assert_close(packed.eval()(ids), dense.eval()(ids), atol=1e-12, rtol=0)


@pytest.mark.parametrize("compute_path", ["packed", "dense"])
def test_bfloat16_autocast_runs_on_every_path_and_stays_near_float32(compute_path):
    """Under ``torch.autocast`` the projections return bfloat16 while the embeddings stay float32:
    every path must run (the packed path once wrote bfloat16 into a float32 buffer) and agree with
    the float32 forward to bfloat16's precision, with gradients for every parameter."""
    torch.manual_seed(0)
    encoder = SASRecEncoder(30, hidden_size=16, num_heads=2, num_layers=2, max_len=12, compute_path=compute_path)
    ids = torch.randint(1, 31, (9, 12))
    ids[torch.arange(12)[None] < torch.arange(0, 18, 2)[:, None]] = 0  # spans 12, 10, ..., 0
    ids[1, -3] = 0  # a hole, as masking with id 0 makes
    exact = encoder.eval()(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = encoder(ids)
    assert mixed.dtype in (torch.float32, torch.bfloat16)
    real = ids > 0
    torch.testing.assert_close(mixed.float()[real], exact[real], atol=0.1, rtol=0.05)
    assert (mixed[~real] == 0).all()
    encoder.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoder(ids).float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_matches_iclrec_reference_float32():
    state = random_iclrec_state(num_items=20, d=16, num_layers=2, max_len=9, seed=3)
    ids = random_ids(4, 9, 20, seed=4)
    encoder = SASRecEncoder.from_iclrec_state_dict(
        {k: v.float() for k, v in state.items()}, num_heads=4
    ).eval()
    with torch.no_grad():
        ours = encoder(ids).double()
    expected = iclrec_reference(state, ids, 4)
    real = ids > 0
    torch.testing.assert_close(ours[real], expected[real], atol=1e-5, rtol=1e-5)


def test_reference_agrees_for_left_padded_batch_with_extra_checkpoint_keys():
    state = random_iclrec_state(num_items=15, d=8, num_layers=3, max_len=6, seed=11)
    checkpoint = dict(state)
    checkpoint["projection.weight"] = torch.randn(3, 8)  # a head some trainer saved
    checkpoint["criterion.something"] = torch.zeros(1)
    ids = torch.tensor([[0, 0, 0, 4, 16, 2], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])
    encoder = SASRecEncoder.from_iclrec_state_dict(checkpoint, num_heads=2).double().eval()
    assert encoder.num_layers == 3 and encoder.num_items == 15 and encoder.max_len == 6
    with torch.no_grad():
        ours = encoder(ids)
    torch.testing.assert_close(ours[ids > 0], iclrec_reference(state, ids, 2)[ids > 0])


# --------------------------------------------------------------------------------------------
# Laws: causality, padding, no NaN
# --------------------------------------------------------------------------------------------


@settings(max_examples=30)
@given(case=encoder_cases(), data=st.data())
def test_causality_later_items_never_change_earlier_outputs(case, data):
    state, heads, ids = case
    encoder = SASRecEncoder.from_iclrec_state_dict(state, num_heads=heads).double().eval()
    b, l = ids.shape
    i = data.draw(st.integers(0, l - 1))
    changed = ids.clone()
    changed[:, i + 1 :] = data.draw(long_tensors((b, l - i - 1), 0, encoder.mask_id))
    with torch.no_grad():
        before, after = encoder(ids), encoder(changed)
    keep = ids[:, : i + 1] > 0
    torch.testing.assert_close(before[:, : i + 1][keep], after[:, : i + 1][keep])


@settings(max_examples=20)
@given(case=encoder_cases(), data=st.data())
def test_padding_embedding_never_reaches_real_positions(case, data):
    state, heads, ids = case
    encoder = SASRecEncoder.from_iclrec_state_dict(state, num_heads=heads).double().eval()
    row = data.draw(float_tensors((encoder.hidden_size,), low=-10.0, high=10.0))
    with torch.no_grad():
        before = encoder(ids)
        encoder.item_embeddings.weight[0] = row
        after = encoder(ids)
    real = ids > 0
    torch.testing.assert_close(before[real], after[real])


@settings(max_examples=20)
@given(seq=left_padded_sequences(max_batch=1, max_len=7, max_items=12), data=st.data())
def test_padding_positions_never_influence_real_positions(seq, data):
    """Perturbing the position rows that only padding uses leaves every real output unchanged."""
    ids, n = seq
    encoder = SASRecEncoder(n, hidden_size=8, num_heads=2, max_len=7).double().eval()
    num_pad = int((ids[0] == 0).sum())
    shift = data.draw(float_tensors((num_pad, 8)))
    with torch.no_grad():
        before = encoder(ids)
        encoder.position_embeddings.weight[:num_pad] += shift
        after = encoder(ids)
    torch.testing.assert_close(before[:, num_pad:], after[:, num_pad:])


@settings(max_examples=20)
@given(seq=left_padded_sequences(max_batch=6, max_len=7, max_items=12))
def test_each_row_is_encoded_independently_of_the_batch(seq):
    ids, n = seq
    encoder = SASRecEncoder(num_items=n, hidden_size=8, num_heads=2, max_len=7).double().eval()
    with torch.no_grad():
        batch = encoder(ids)
        rows = torch.cat([encoder(ids[s : s + 1]) for s in range(ids.shape[0])])
    real = ids > 0
    torch.testing.assert_close(batch[real], rows[real])


@pytest.mark.parametrize("training", [False, True])
def test_no_nan_for_all_padding_rows_and_padding_queries(training):
    encoder = small_encoder().train(training)
    ids = torch.tensor([[0] * 7, [0, 0, 3, 4, 0, 5, 0], [1, 0, 0, 0, 0, 0, 0]])
    out = encoder(ids)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


@settings(max_examples=30)
@given(ids=st.integers(1, 6).flatmap(lambda l: long_tensors((3, l), 0, 3)))
def test_attention_masks_against_loops(ids):
    masked = sasrec_attention_mask(ids)
    iclrec = sasrec_attention_mask(ids, padding_attention="iclrec")
    b, l = ids.shape
    for s in range(b):
        for i in range(l):
            visible = [j <= i and int(ids[s, j]) > 0 for j in range(l)]
            for j in range(l):
                assert bool(masked[s, i, j]) == (visible[j] or i == j)
                # ICLRec: a row with no visible key sees every key (-10000 added to all scores)
                assert bool(iclrec[s, i, j]) == (visible[j] or not any(visible))


def test_attention_mask_rejects_bad_inputs():
    with pytest.raises(ValueError, match="padding_attention must be one of"):
        sasrec_attention_mask(torch.ones(2, 3, dtype=torch.long), padding_attention="none")
    with pytest.raises(TypeError, match="integer tensor"):
        sasrec_attention_mask(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(b, l\)"):
        sasrec_attention_mask(torch.ones(3, dtype=torch.long))


# --------------------------------------------------------------------------------------------
# Training behaviour and initialisation
# --------------------------------------------------------------------------------------------


def test_gradient_reaches_every_parameter():
    encoder = small_encoder(dropout=0.1)
    ids = random_ids(4, 7, 12, seed=5, pad_prob=0.2)
    ids[:, -1] = 3
    encoder(ids)[ids > 0].pow(2).sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if name != "item_embeddings.weight":
            assert param.grad.abs().sum() > 0, name
    grad = encoder.item_embeddings.weight.grad
    assert torch.equal(grad[0], torch.zeros(8))  # padding_idx: the padding row is not trained
    used = torch.unique(ids[ids > 0])
    assert (grad[used].abs().sum(-1) > 0).all()


def test_eval_is_deterministic_and_train_mode_applies_dropout():
    encoder = small_encoder(dropout=0.5)
    ids = random_ids(3, 7, 12, seed=6, pad_prob=0.0)
    encoder.eval()
    torch.testing.assert_close(encoder(ids), encoder(ids), rtol=0, atol=0)
    encoder.train()
    assert not torch.allclose(encoder(ids), encoder(ids))


def test_zero_dropout_train_equals_eval():
    encoder = small_encoder(dropout=0.0)
    ids = random_ids(3, 7, 12, seed=6)
    real = ids > 0
    torch.testing.assert_close(encoder.train()(ids)[real], encoder.eval()(ids)[real])


def test_attention_dropout_only_changes_training_outputs():
    encoder = small_encoder(dropout=0.0, attention_dropout=0.9)
    assert encoder.attention_dropout == 0.9 and encoder.dropout.p == 0.0
    ids = random_ids(3, 7, 12, seed=8, pad_prob=0.0)
    reference = small_encoder(dropout=0.0).eval()(ids)
    torch.testing.assert_close(encoder.eval()(ids), reference)
    assert not torch.allclose(encoder.train()(ids), reference)
    assert small_encoder(dropout=0.2).attention_dropout == 0.2  # None -> same as dropout


def test_initialisation_follows_the_public_code():
    torch.manual_seed(0)
    encoder = SASRecEncoder(num_items=300, hidden_size=64, num_layers=2, max_len=50)
    items = encoder.item_embeddings.weight
    assert items.shape == (302, 64)
    assert abs(items.std().item() - 0.02) < 0.002 and abs(items.mean().item()) < 0.002
    for name, param in encoder.named_parameters():
        if "LayerNorm.weight" in name:
            assert torch.equal(param, torch.ones_like(param)), name
        elif name.endswith("bias"):
            assert torch.equal(param, torch.zeros_like(param)), name
        else:
            assert abs(param.std().item() - 0.02) < 0.004, name
    assert encoder.item_encoder.layer[0].intermediate.dense_1.weight.shape == (256, 64)


# --------------------------------------------------------------------------------------------
# represent / score_items
# --------------------------------------------------------------------------------------------


@settings(max_examples=20)
@given(seq=left_padded_sequences(max_batch=5, max_len=7, max_items=12))
def test_represent_matches_loops(seq):
    ids, n = seq
    ids = torch.cat([ids, torch.zeros(1, ids.shape[1], dtype=torch.long)])  # an all-padding row
    encoder = SASRecEncoder(num_items=n, hidden_size=8, num_heads=2, max_len=7).double().eval()
    with torch.no_grad():
        hidden = encoder(ids)
        last = encoder.represent(ids)
        mean = encoder.represent(ids, pooling="mean")
        mean_given = encoder.represent(ids, pooling="mean", hidden=hidden)
    for s in range(ids.shape[0]):
        torch.testing.assert_close(last[s], hidden[s, -1])
        rows = [hidden[s, t] for t in range(ids.shape[1]) if int(ids[s, t]) != 0]
        expected = torch.stack(rows).mean(0) if rows else torch.zeros(8, dtype=torch.float64)
        torch.testing.assert_close(mean[s], expected)
    torch.testing.assert_close(mean_given, mean)


def test_represent_with_hidden_does_not_recompute():
    encoder = small_encoder().eval()
    ids = random_ids(2, 7, 12, seed=9)
    ids[:, -1] = 4
    fake = torch.arange(2 * 7 * 8, dtype=torch.float32).reshape(2, 7, 8)
    torch.testing.assert_close(encoder.represent(ids, hidden=fake), fake[:, -1])


def test_score_items_matches_loops():
    encoder = small_encoder().double()
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 3, 8, generator=g, dtype=torch.float64)
    scores = encoder.score_items(h)
    assert scores.shape == (2, 3, 13)  # ids 0..12; the mask id 13 is excluded
    table = encoder.item_embeddings.weight.detach()
    for a in range(2):
        for c in range(3):
            for item in range(13):
                expected = sum(h[a, c, t] * table[item, t] for t in range(8))
                torch.testing.assert_close(scores[a, c, item], expected)


def test_score_items_gradient_reaches_the_item_table():
    encoder = small_encoder()
    encoder.score_items(torch.randn(4, 8)).sum().backward()
    grad = encoder.item_embeddings.weight.grad
    assert (grad[1:13].abs().sum(-1) > 0).all()
    assert torch.equal(grad[13], torch.zeros(8))  # the mask id's row is never scored


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(num_items=0), ValueError, "num_items must be >= 1"),
        (dict(num_items=2.0), TypeError, "num_items must be an int"),
        (dict(num_items=True), TypeError, "num_items must be an int"),
        (dict(num_items=5, hidden_size=0), ValueError, "hidden_size must be >= 1"),
        (dict(num_items=5, num_layers=0), ValueError, "num_layers must be >= 1"),
        (dict(num_items=5, num_heads=0), ValueError, "num_heads must be >= 1"),
        (dict(num_items=5, max_len=0), ValueError, "max_len must be >= 1"),
        (dict(num_items=5, hidden_size=10, num_heads=3), ValueError, "divisible"),
        (dict(num_items=5, dropout=1.5), ValueError, r"dropout must lie in \[0, 1\]"),
        (dict(num_items=5, attention_dropout=-0.1), ValueError, "attention_dropout"),
        (dict(num_items=5, layer_norm_eps=0.0), ValueError, r"layer_norm_eps must lie in \(0, inf"),
        (dict(num_items=5, layer_norm_eps=float("nan")), ValueError, "layer_norm_eps must be finite"),
        (dict(num_items=5, dropout="0.1"), TypeError, "dropout must be a real number"),
        (dict(num_items=5, compute_path="sparse"), ValueError, "compute_path must be one of"),
        (dict(num_items=5, padding_attention="none"), ValueError, "padding_attention must be one"),
        (
            dict(num_items=5, compute_path="packed", padding_attention="iclrec"),
            ValueError,
            "compute_path='packed' skips",
        ),
        (dict(num_items=5, initializer_range=-1.0), ValueError, "initializer_range"),
    ],
)
def test_constructor_rejects_bad_hyper_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        SASRecEncoder(**kwargs)


def test_forward_rejects_bad_item_ids():
    encoder = small_encoder()
    with pytest.raises(TypeError, match="item_ids must be a torch.Tensor"):
        encoder([[1, 2]])
    with pytest.raises(TypeError, match="integer tensor"):
        encoder(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(b, l\)"):
        encoder(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(b, l\)"):
        encoder(torch.ones(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="must not be empty"):
        encoder(torch.ones(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="must not be empty"):
        encoder(torch.ones(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="at most max_len=7"):
        encoder(torch.ones(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 13\]"):
        encoder(torch.tensor([[1, 14]]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 13\]"):
        encoder(torch.tensor([[-1, 2]]))
    assert encoder(torch.tensor([[0, 13]])).shape == (1, 2, 8)  # the mask id is accepted


def test_helpers_reject_bad_inputs():
    encoder = small_encoder()
    ids = random_ids(2, 7, 12, seed=1)
    with pytest.raises(ValueError, match="pooling must be one of"):
        encoder.represent(ids, pooling="first")
    with pytest.raises(ValueError, match=r"hidden must have shape \(b, l, d\)"):
        encoder.represent(ids, hidden=torch.zeros(2, 6, 8))
    with pytest.raises(ValueError, match=r"hidden must have shape \(b, l, d\)"):
        encoder.represent(ids, hidden=torch.zeros(2, 8))
    with pytest.raises(TypeError, match="hidden must be a floating-point"):
        encoder.represent(ids, hidden=torch.zeros(2, 7, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="integer tensor"):
        encoder.represent(ids.float(), hidden=torch.zeros(2, 7, 8))
    with pytest.raises(ValueError, match=r"h must have shape \(..., d\) with d = 8"):
        encoder.score_items(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"h must have shape"):
        encoder.score_items(torch.tensor(1.0))
    with pytest.raises(TypeError, match="h must be a floating-point"):
        encoder.score_items(torch.zeros(3, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="h must be a torch.Tensor"):
        encoder.score_items([0.0] * 8)


# --------------------------------------------------------------------------------------------
# New pooling modes, embed_items, dtype promotion, right padding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_attention", ["masked", "iclrec"])
@settings(max_examples=15)
@given(seq=left_padded_sequences(max_batch=4, max_len=6, max_items=12))
def test_mean_all_and_flatten_match_loops(seq, padding_attention):
    ids, n = seq
    encoder = SASRecEncoder(n, hidden_size=4, num_heads=2, max_len=6,
                            padding_attention=padding_attention).double().eval()
    with torch.no_grad():
        hidden = encoder(ids)
        mean_all = encoder.represent(ids, pooling="mean_all")
        flat = encoder.represent(ids, pooling="flatten", hidden=hidden)
    b, l = ids.shape
    assert flat.shape == (b, l * 4)
    for s in range(b):
        torch.testing.assert_close(mean_all[s], sum(hidden[s, t] for t in range(l)) / l)
        for t in range(l):
            torch.testing.assert_close(flat[s, 4 * t : 4 * t + 4], hidden[s, t])


def test_poolings_are_public_and_complete():
    assert POOLINGS == ("last", "mean", "mean_all", "flatten")
    encoder = small_encoder().eval()
    ids = torch.tensor([[0, 0, 0, 3, 4, 5, 6]])
    for pooling in POOLINGS:
        assert encoder.represent(ids, pooling=pooling).shape[0] == 1


def test_last_pooling_rejects_right_padding_behind_the_switch():
    encoder = small_encoder().eval()
    right = torch.tensor([[0, 0, 2, 3, 4, 5, 6], [1, 2, 3, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"left-padded for pooling='last'.*row 1"):
        encoder.represent(right)
    with pytest.raises(ValueError, match="row 1"):
        encoder.represent(right, hidden=encoder(right))
    # mean pooling and the encoder itself accept zeros anywhere (ICLRec masks items to 0)
    assert encoder.represent(right, pooling="mean").shape == (2, 8)
    all_padding = torch.zeros(1, 7, dtype=torch.long)
    assert torch.equal(encoder.represent(all_padding), torch.zeros(1, 8))
    set_validate_args(False)
    try:
        assert encoder.represent(right).shape == (2, 8)  # trusted
    finally:
        set_validate_args(True)


@settings(max_examples=20)
@given(ids=st.integers(1, 3).flatmap(lambda r: long_tensors((2,) * r, 0, 13)))
def test_embed_items_reads_the_tied_table(ids):
    encoder = small_encoder()
    vectors = encoder.embed_items(ids)
    assert vectors.shape == (*ids.shape, 8)
    flat_ids, flat = ids.flatten(), vectors.reshape(-1, 8)
    for i in range(flat_ids.numel()):
        assert torch.equal(flat[i], encoder.item_embeddings.weight[int(flat_ids[i])])
    vectors.sum().backward()
    assert encoder.item_embeddings.weight.grad is not None


def test_embed_items_rejects_bad_ids():
    encoder = small_encoder()
    with pytest.raises(ValueError, match=r"item_ids must lie in \[0, 13\]"):
        encoder.embed_items(torch.tensor([1, 14]))
    with pytest.raises(TypeError, match="integer tensor"):
        encoder.embed_items(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        encoder.embed_items([1, 2])


@pytest.mark.parametrize(
    ("h_dtype", "table_dtype", "expected"),
    [
        (torch.float64, torch.float32, torch.float64),
        (torch.float32, torch.float64, torch.float64),
        (torch.float16, torch.float32, torch.float32),
        (torch.bfloat16, torch.float32, torch.float32),
        (torch.float32, torch.float32, torch.float32),
    ],
)
def test_score_items_promotes_dtypes(h_dtype, table_dtype, expected):
    encoder = small_encoder().to(table_dtype)
    h = torch.linspace(-1, 1, 24).reshape(3, 8).to(h_dtype)
    scores = encoder.score_items(h)
    assert scores.dtype == expected and scores.shape == (3, 13)
    reference = h.double() @ encoder.item_embeddings.weight.detach().double()[:13].T
    tol = 1e-12 if expected == torch.float64 else 1e-5
    torch.testing.assert_close(scores.double(), reference, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------
# Compute paths: no host reads on the dense path, the "auto" rule
# --------------------------------------------------------------------------------------------

_HOST_READS = {
    "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero",
    "unique", "masked_select", "argwhere",
}


class _HostReads(TorchFunctionMode):
    """Records every torch call that reads tensor values on the host (a GPU sync)."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in _HOST_READS:
            self.reads.append(name)
        if name == "__getitem__" and any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bool
            for a in (args[1] if isinstance(args[1], tuple) else (args[1],))
        ):
            self.reads.append("boolean index")
        if name == "repeat_interleave" and "output_size" not in kwargs:
            self.reads.append(name)
        return func(*args, **kwargs)


@contextmanager
def count_host_reads():
    with _HostReads() as mode:
        yield mode.reads


def _one_step(encoder, ids):
    hidden = encoder(ids)
    z = [encoder.represent(ids, pooling=p, hidden=hidden) for p in POOLINGS]
    scores = encoder.score_items(z[0])
    loss = scores.logsumexp(-1).mean() + sum(t.pow(2).mean() for t in z)
    loss = loss + (hidden * encoder.embed_items(ids)).sum()
    loss.backward()


@pytest.mark.parametrize("padding_attention", ["masked", "iclrec"])
def test_dense_path_reads_nothing_from_the_device_with_validation_off(padding_attention):
    encoder = small_encoder(compute_path="dense", padding_attention=padding_attention)
    ids = torch.tensor([[0, 0, 0, 3, 4, 5, 6], [0, 1, 0, 2, 9, 13, 7]])
    set_validate_args(False)
    try:
        with count_host_reads() as reads:
            _one_step(encoder, ids)
    finally:
        set_validate_args(True)
    assert reads == []
    with count_host_reads() as reads:  # the detector works: value checks read
        _one_step(encoder, ids)
    assert reads
    packed = small_encoder(compute_path="packed")
    set_validate_args(False)
    try:
        with count_host_reads() as reads:  # the packed path reads by design
            packed(ids)
    finally:
        set_validate_args(True)
    assert "nonzero" in reads


def test_auto_path_rule_on_the_cpu(monkeypatch):
    encoder = small_encoder()
    assert encoder.compute_path == "auto"
    taken = []
    dense, packed = encoder._forward_dense, encoder._forward_packed
    monkeypatch.setattr(encoder, "_forward_dense", lambda ids: taken.append("dense") or dense(ids))
    monkeypatch.setattr(encoder, "_forward_packed", lambda ids: taken.append("packed") or packed(ids))
    sparse = torch.tensor([[0, 0, 0, 0, 0, 5, 6]] * 4)  # 2/7 real
    full = torch.tensor([[1, 2, 3, 4, 5, 5, 6]] * 4)
    threshold = encoder_module.AUTO_PACKED_MAX_REAL_FRACTION
    encoder(sparse)
    encoder(full)
    assert taken == ["packed", "dense"] and 2 / 7 <= threshold < 1
    iclrec = small_encoder(padding_attention="iclrec")
    assert iclrec.compute_path == "dense"  # forced: packed computes no padding outputs


def test_auto_path_is_dense_off_the_cpu():
    """On a device other than the CPU (meta stands in for a GPU) "auto" takes the dense path,
    which needs no tensor values at all: the packed path's nonzero would fail on meta."""
    encoder = small_encoder().to("meta")
    ids = torch.zeros(3, 7, dtype=torch.long, device="meta")
    set_validate_args(False)
    try:
        out = encoder(ids)
        z = encoder.represent(ids, pooling="mean", hidden=out)
    finally:
        set_validate_args(True)
    assert out.shape == (3, 7, 8) and out.device.type == "meta" and z.shape == (3, 8)


def test_auto_path_is_dense_under_torch_compile_and_equal_to_eager():
    """While torch.compile traces it, "auto" takes the dense path on the CPU too (the packed
    path's data-dependent bucket sizes would break the graph): one graph, no break, and the
    compiled output equals the eager (packed) one at every position."""
    torch.manual_seed(0)
    encoder = small_encoder().eval()
    sparse = torch.tensor([[0, 0, 0, 0, 0, 5, 6], [0, 0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 0, 0, 9]])
    set_validate_args(False)
    torch._dynamo.reset()
    try:
        explained = torch._dynamo.explain(encoder)(sparse)
        compiled = torch.compile(encoder, backend="eager")(sparse)
    finally:
        torch._dynamo.reset()
        set_validate_args(True)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch.testing.assert_close(compiled, encoder(sparse), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("padding_attention", ["masked", "iclrec"])
def test_no_host_sync_on_cuda_under_sync_debug_mode(padding_attention):
    encoder = small_encoder(padding_attention=padding_attention).cuda()
    ids = torch.tensor([[0, 0, 0, 3, 4, 5, 6], [0, 1, 0, 2, 9, 13, 7]], device="cuda")
    _one_step(encoder, ids)  # warm-up (lazy initialisations may sync)
    torch.cuda.synchronize()
    set_validate_args(False)
    torch.cuda.set_sync_debug_mode("error")
    try:
        _one_step(encoder, ids)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        set_validate_args(True)


# --------------------------------------------------------------------------------------------
# Private CPU dropout (rand_like >= p instead of bernoulli_)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_cpu_dropout_keeps_about_one_minus_p_and_scales_by_its_inverse(p):
    torch.manual_seed(0)
    n = 200_000
    y = encoder_module._dropout(torch.ones(n, dtype=torch.float64), p, True)
    kept = y != 0
    fraction = kept.double().mean().item()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(fraction - (1 - p)) < 6 * sigma  # binomial bound, fails with prob ~2e-9
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cpu_dropout_keeps_the_dtype_and_draws_a_new_mask_per_call(dtype):
    x = torch.ones(1000, dtype=dtype)
    a, b = (encoder_module._dropout(x, 0.5, True) for _ in range(2))
    assert a.dtype == dtype and not torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 2.0}


def test_cpu_dropout_is_the_identity_in_eval_mode_or_for_p_zero():
    x = torch.randn(5, 7)
    assert encoder_module._dropout(x, 0.5, False) is x
    assert encoder_module._dropout(x, 0.0, True) is x
    assert torch.equal(encoder_module._dropout(x, 1.0, True), torch.zeros_like(x))


def test_cpu_dropout_gradient_flows_only_through_kept_entries():
    torch.manual_seed(1)
    p = 0.3
    x = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    y = encoder_module._dropout(x, p, True)
    kept = (y != 0).double()
    torch.testing.assert_close(y, x.detach() * kept / (1 - p))
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights * kept / (1 - p))


def test_encoder_uses_the_cpu_dropout_and_keeps_its_state_dict():
    encoder = SASRecEncoder(10, hidden_size=8, num_heads=2, max_len=5, dropout=0.2)
    dropouts = [m for m in encoder.modules() if isinstance(m, encoder_module._Dropout)]
    assert len(dropouts) == 1 + 2 * encoder.num_layers
    assert all(m.p == 0.2 for m in dropouts)
    assert not any(isinstance(m, torch.nn.Dropout) for m in encoder.modules())
    assert not any("dropout" in key for key in encoder.state_dict())
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    encoder.train()
    assert not torch.equal(encoder(ids), encoder(ids))  # a fresh mask per call
    encoder.eval()
    assert torch.equal(encoder(ids), encoder(ids))


# --------------------------------------------------------------------------------------------
# Private CPU training attention (explicit softmax with the CPU dropout)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_attention", ["masked", "iclrec"])
def test_cpu_training_attention_is_the_fused_attention_with_its_dropout(monkeypatch, padding_attention):
    """With the dropout replaced by the identity, the explicit CPU path equals
    ``F.scaled_dot_product_attention`` in value and gradient, for both padding modes."""
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[0, 0, 0, 4, 2, 7], [0, 3, 1, 1, 5, 6], [0, 0, 0, 0, 0, 9]])
    mask = sasrec_attention_mask(ids, padding_attention=padding_attention)[:, None]
    leaves = [torch.randn(3, 2, 6, 4, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(3)]
    want = torch.nn.functional.scaled_dot_product_attention(*leaves, attn_mask=mask)
    want_grads = torch.autograd.grad(want.square().sum(), leaves)
    monkeypatch.setattr(encoder_module, "_dropout", lambda x, p, training: x)
    got = encoder_module._attend(*leaves, mask, 0.4)
    got_grads = torch.autograd.grad(got.square().sum(), leaves)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def test_cpu_training_attention_drops_weights_with_the_cpu_dropout():
    """Each attention weight is kept with probability 1 - p and scaled by 1 / (1 - p): with
    v the identity, the output rows are the dropped weights themselves."""
    torch.manual_seed(2)
    b, length, p = 400, 8, 0.25
    q, k = torch.randn(b, 1, length, length), torch.randn(b, 1, length, length)
    v = torch.eye(length).expand(b, 1, length, length)
    mask = torch.ones(b, 1, length, length, dtype=torch.bool)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(length), dim=-1)
    out = encoder_module._attend(q, k, v, mask, p)
    kept = out != 0
    n = kept.numel()
    assert abs(kept.double().mean().item() - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(out[kept], weights[kept] / (1 - p))
