"""SASRecEncoder: the ICLRec reference, causality, padding, state dicts, helpers, bad inputs."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from strategies import left_padded_sequences, seeds

from s4rec_components import SASRecEncoder
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
    """(state, num_heads, ids): random ICLRec weights and ids with padding anywhere."""
    d, h = draw(st.sampled_from(HEAD_CONFIGS))
    num_items = draw(st.integers(1, 9))
    max_len = draw(st.integers(1, 6))
    l = draw(st.integers(1, max_len))
    b = draw(st.integers(1, 3))
    layers = draw(st.integers(1, max_layers))
    state = random_iclrec_state(num_items, d, layers, max_len, draw(seeds))
    ids = random_ids(b, l, num_items, draw(seeds), pad_prob=draw(st.sampled_from([0.0, 0.3, 0.7])))
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
    g = torch.Generator().manual_seed(data.draw(seeds))
    changed[:, i + 1 :] = torch.randint(0, encoder.mask_id + 1, (b, l - i - 1), generator=g)
    with torch.no_grad():
        before, after = encoder(ids), encoder(changed)
    keep = ids[:, : i + 1] > 0
    torch.testing.assert_close(before[:, : i + 1][keep], after[:, : i + 1][keep])


@settings(max_examples=20)
@given(case=encoder_cases(), seed=seeds)
def test_padding_embedding_never_reaches_real_positions(case, seed):
    state, heads, ids = case
    encoder = SASRecEncoder.from_iclrec_state_dict(state, num_heads=heads).double().eval()
    with torch.no_grad():
        before = encoder(ids)
        g = torch.Generator().manual_seed(seed)
        encoder.item_embeddings.weight[0] = torch.randn(
            encoder.hidden_size, generator=g, dtype=torch.float64
        ) * 5
        after = encoder(ids)
    real = ids > 0
    torch.testing.assert_close(before[real], after[real])


@settings(max_examples=20)
@given(seq=left_padded_sequences(max_batch=1, max_len=7, max_items=12), seed=seeds)
def test_padding_positions_never_influence_real_positions(seq, seed):
    """Perturbing the position rows that only padding uses leaves every real output unchanged."""
    ids, n = seq
    encoder = SASRecEncoder(num_items=n, hidden_size=8, num_heads=2, max_len=7).double().eval()
    num_pad = int((ids[0] == 0).sum())
    with torch.no_grad():
        before = encoder(ids)
        g = torch.Generator().manual_seed(seed)
        encoder.position_embeddings.weight[:num_pad] += torch.randn(
            num_pad, 8, generator=g, dtype=torch.float64
        )
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


def test_attention_mask_is_causal_and_key_padding_plus_diagonal():
    ids = random_ids(5, 6, 9, seed=1, pad_prob=0.5)
    mask = sasrec_attention_mask(ids)
    for s in range(5):
        for i in range(6):
            for j in range(6):
                expected = (j <= i and int(ids[s, j]) > 0) or i == j
                assert bool(mask[s, i, j]) == expected


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
