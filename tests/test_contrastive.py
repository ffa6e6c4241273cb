"""Tests for ``s4rec_components.contrastive``: Eq. 13-14 against a loop reference, NT-Xent, laws."""

from __future__ import annotations

import math
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from strategies import float_tensors, seeds, temperatures

from s4rec_components import IntentInfoNCE, intent_info_nce

similarities = st.sampled_from(["dot", "cosine"])
small = st.integers(min_value=1, max_value=7)


@dataclass
class Batch:
    """Inputs of one call: two views, optional prototypes / assignments / labels."""

    z1: torch.Tensor
    z2: torch.Tensor
    prototypes: torch.Tensor | None
    assignments: torch.Tensor | None
    labels: torch.Tensor | None


@st.composite
def batches(draw, with_prototypes=st.booleans(), with_labels=st.booleans(), min_batch=1):
    """Draw b, d, k, then float64 views in [-2, 2] and integer assignments / labels."""
    b = draw(st.integers(min_value=min_batch, max_value=7))
    d, k = draw(small), draw(small)
    z1 = draw(float_tensors((b, d), low=-2.0, high=2.0))
    z2 = draw(float_tensors((b, d), low=-2.0, high=2.0))
    g = torch.Generator().manual_seed(draw(seeds))
    prototypes = assignments = labels = None
    if draw(with_prototypes):
        prototypes = draw(float_tensors((k, d), low=-2.0, high=2.0))
        assignments = torch.randint(0, k, (b,), generator=g)
    if draw(with_labels):
        labels = torch.randint(0, max(1, b // 2 + 1), (b,), generator=g)
    return Batch(z1, z2, prototypes, assignments, labels)


def call(batch: Batch, **kwargs) -> torch.Tensor:
    return intent_info_nce(
        batch.z1, batch.z2, batch.prototypes, batch.assignments, labels=batch.labels, **kwargs
    )


def reference(batch: Batch, temperature: float, similarity: str) -> torch.Tensor:
    """``(2, b)`` per-anchor losses, transcribed term by term from Eq. 14 with Python loops."""

    def sim(a: torch.Tensor, c: torch.Tensor) -> float:
        a, c = a.double(), c.double()
        if similarity == "cosine":
            return float(a @ c) / max(float(a.norm()) * float(c.norm()), 1e-300)
        return float(a @ c)

    b = batch.z1.shape[0]
    out = torch.zeros(2, b, dtype=torch.float64)
    for row, (anchors, others) in enumerate(((batch.z1, batch.z2), (batch.z2, batch.z1))):
        for u in range(b):
            positive = sim(anchors[u], others[u]) / temperature
            terms = [positive]
            for n in range(b):
                if n == u:
                    continue
                if batch.labels is not None and int(batch.labels[n]) == int(batch.labels[u]):
                    continue
                terms.append(sim(anchors[u], others[n]) / temperature)
                terms.append(sim(anchors[u], anchors[n]) / temperature)
            if batch.prototypes is not None:
                for k in range(batch.prototypes.shape[0]):
                    if k != int(batch.assignments[u]):
                        terms.append(sim(anchors[u], batch.prototypes[k]) / temperature)
            peak = max(terms)
            log_denominator = peak + math.log(math.fsum(math.exp(t - peak) for t in terms))
            out[row, u] = log_denominator - positive
    return out


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: 2b anchors, positives b apart, self-similarity removed, mean."""
    b = z1.shape[0]
    z = torch.cat([z1, z2])
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    targets = (torch.arange(2 * b) + b) % (2 * b)
    return F.cross_entropy(logits, targets)


# ----------------------------------------------------------------------------- reference


@settings(max_examples=30)
@given(batch=batches(), temperature=temperatures, similarity=similarities)
def test_equals_loop_reference(batch, temperature, similarity):
    expected = reference(batch, temperature, similarity)
    none = call(batch, temperature=temperature, similarity=similarity, reduction="none")
    torch.testing.assert_close(none, expected)
    mean = call(batch, temperature=temperature, similarity=similarity)
    torch.testing.assert_close(mean, expected.mean(dim=1).sum())
    total = call(batch, temperature=temperature, similarity=similarity, reduction="sum")
    torch.testing.assert_close(total, expected.sum())


@given(batch=batches(with_prototypes=st.just(False), with_labels=st.just(False)),
       temperature=temperatures)
def test_without_prototypes_is_twice_nt_xent(batch, temperature):
    loss = intent_info_nce(batch.z1, batch.z2, temperature=temperature)
    torch.testing.assert_close(loss, 2 * nt_xent(batch.z1, batch.z2, temperature))


# ----------------------------------------------------------------------------- laws


@given(batch=batches(), temperature=temperatures, similarity=similarities)
def test_symmetric_in_the_views(batch, temperature, similarity):
    swapped = Batch(batch.z2, batch.z1, batch.prototypes, batch.assignments, batch.labels)
    kwargs = {"temperature": temperature, "similarity": similarity}
    torch.testing.assert_close(call(swapped, **kwargs), call(batch, **kwargs))
    torch.testing.assert_close(
        call(swapped, reduction="none", **kwargs), call(batch, reduction="none", **kwargs).flip(0)
    )


@given(batch=batches(), temperature=temperatures, similarity=similarities)
def test_non_negative(batch, temperature, similarity):
    losses = call(batch, temperature=temperature, similarity=similarity, reduction="none")
    assert bool((losses >= 0).all())


@given(batch=batches(), seed=seeds, similarity=similarities)
def test_permutation_equivariant(batch, seed, similarity):
    perm = torch.randperm(batch.z1.shape[0], generator=torch.Generator().manual_seed(seed))

    def pick(x):
        return None if x is None else x[perm]

    permuted = Batch(batch.z1[perm], batch.z2[perm], batch.prototypes,
                     pick(batch.assignments), pick(batch.labels))
    torch.testing.assert_close(
        call(permuted, similarity=similarity, reduction="none"),
        call(batch, similarity=similarity, reduction="none")[:, perm],
    )


@given(batch=batches(), scale=st.floats(min_value=0.2, max_value=3.0), temperature=temperatures)
def test_dot_scaling_trades_against_temperature(batch, scale, temperature):
    """Dot logits of c z / (c^2 tau) equal those of z / tau."""
    scaled = Batch(
        batch.z1 * scale, batch.z2 * scale,
        None if batch.prototypes is None else batch.prototypes * scale,
        batch.assignments, batch.labels,
    )
    torch.testing.assert_close(
        call(scaled, temperature=temperature * scale**2), call(batch, temperature=temperature)
    )


@given(batch=batches(), scale=st.floats(min_value=0.2, max_value=3.0))
def test_cosine_ignores_norms(batch, scale):
    scaled = Batch(batch.z1 * scale, batch.z2 * (scale + 1.0), batch.prototypes,
                   batch.assignments, batch.labels)
    torch.testing.assert_close(
        call(scaled, similarity="cosine"), call(batch, similarity="cosine")
    )


# ----------------------------------------------------------------------------- closed forms


@given(b=small, d=small, k=small, use_prototypes=st.booleans(), temperature=temperatures)
def test_all_equal_similarities_give_log_candidates(b, d, k, use_prototypes, temperature):
    z = torch.zeros(b, d, dtype=torch.float64)
    prototypes = torch.zeros(k, d, dtype=torch.float64) if use_prototypes else None
    assignments = torch.arange(b) % k if use_prototypes else None
    candidates = 2 * b - 1 + (k - 1 if use_prototypes else 0)
    none = intent_info_nce(z, z, prototypes, assignments, temperature, reduction="none")
    torch.testing.assert_close(none, torch.full((2, b), math.log(candidates), dtype=torch.float64))
    mean = intent_info_nce(z, z, prototypes, assignments, temperature)
    torch.testing.assert_close(mean, torch.tensor(2 * math.log(candidates), dtype=torch.float64))


def test_cosine_all_equal_vectors_closed_form():
    v = torch.tensor([[0.3, -1.2, 2.0]])
    b, k = 5, 4
    z = v.expand(b, 3) * torch.arange(1.0, b + 1).unsqueeze(1)  # same direction, other norms
    mu = v.expand(k, 3) * 7.0
    loss = intent_info_nce(z, z, mu, torch.tensor([0, 1, 2, 3, 0]), similarity="cosine")
    torch.testing.assert_close(loss, torch.tensor(2 * math.log(2 * b - 1 + k - 1)))


def test_single_sample_without_prototypes_is_zero():
    loss = intent_info_nce(torch.randn(1, 4), torch.randn(1, 4), reduction="none")
    torch.testing.assert_close(loss, torch.zeros(2, 1))
    # With prototypes, the k - 1 non-assigned intents are still negatives.
    z = torch.zeros(1, 4)
    loss = intent_info_nce(z, z, torch.zeros(3, 4), torch.tensor([1]))
    torch.testing.assert_close(loss, torch.tensor(2 * math.log(3.0)))


def test_labels_mask_negatives():
    """All-equal similarities: only rows with another label (and intents) stay candidates."""
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    z = torch.zeros(6, 2)
    none = intent_info_nce(z, z, labels=labels, reduction="none")
    others = (labels.unsqueeze(1) != labels.unsqueeze(0)).sum(dim=1).float()
    torch.testing.assert_close(none, torch.log(1 + 2 * others).expand(2, 6))
    # One label for all: the positive is the only candidate.
    one_label = torch.zeros(4, dtype=torch.long)
    same = intent_info_nce(torch.randn(4, 3), torch.randn(4, 3), labels=one_label)
    torch.testing.assert_close(same, torch.tensor(0.0))


def test_assigned_prototype_is_not_a_negative():
    """Moving the assigned prototype onto the anchor changes nothing; moving another does."""
    z1 = torch.tensor([[1.0, 0.0]])
    z2 = torch.tensor([[0.0, 1.0]])
    far = torch.tensor([[-5.0, 0.0], [-5.0, 0.0]])
    near_assigned = torch.tensor([[5.0, 0.0], [-5.0, 0.0]])
    near_other = torch.tensor([[-5.0, 0.0], [5.0, 0.0]])
    h = torch.tensor([0])
    base = intent_info_nce(z1, z2, far, h)
    torch.testing.assert_close(intent_info_nce(z1, z2, near_assigned, h), base)
    assert intent_info_nce(z1, z2, near_other, h) > base + 1.0


# ----------------------------------------------------------------------------- autograd, dtype


@given(batch=batches(with_prototypes=st.just(True)), similarity=similarities)
def test_gradients_finite(batch, similarity):
    z1 = batch.z1.clone()
    z1[0] = 0.0  # a zero vector must not give nan under cosine either
    z1.requires_grad_(True)
    z2 = batch.z2.clone().requires_grad_(True)
    mu = batch.prototypes.clone().requires_grad_(True)
    loss = intent_info_nce(z1, z2, mu, batch.assignments, similarity=similarity,
                           labels=batch.labels)
    loss.backward()
    for tensor in (z1, z2, mu):
        assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    mu = torch.randn(3, 8, generator=g)
    h = torch.tensor([0, 1, 2, 0, 1, 2])
    low = intent_info_nce(z1.to(dtype), z2.to(dtype), mu.to(dtype), h, temperature=0.1)
    assert low.dtype == dtype and bool(torch.isfinite(low))
    full = intent_info_nce(z1.to(dtype).float(), z2.to(dtype).float(), mu.to(dtype).float(), h,
                           temperature=0.1)
    torch.testing.assert_close(low.float(), full, rtol=1e-2, atol=1e-2)


@given(batch=batches(), temperature=temperatures, similarity=similarities,
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_module_equals_function(batch, temperature, similarity, reduction):
    module = IntentInfoNCE(temperature=temperature, similarity=similarity, reduction=reduction)
    torch.testing.assert_close(
        module(batch.z1, batch.z2, batch.prototypes, batch.assignments, labels=batch.labels),
        call(batch, temperature=temperature, similarity=similarity, reduction=reduction),
    )
    assert f"similarity={similarity!r}" in repr(module)


# ----------------------------------------------------------------------------- errors

Z = torch.randn(4, 3)
MU = torch.randn(2, 3)
H = torch.tensor([0, 1, 1, 0])
OUT_OF_RANGE = r"assignments must lie in \[0, 1\]"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"z1": Z.tolist()}, TypeError, "z1 must be a torch.Tensor"),
        ({"z2": torch.randn(12)}, ValueError, r"z2 must have shape \(b, d\)"),
        ({"z1": torch.randn(4, 3, 1)}, ValueError, r"z1 must have shape \(b, d\)"),
        ({"z1": torch.ones(4, 3, dtype=torch.long)}, TypeError, "z1 must be a floating-point"),
        ({"z1": torch.randn(0, 3), "z2": torch.randn(0, 3)}, ValueError, "z1 must not be empty"),
        ({"z2": torch.randn(5, 3)}, ValueError, "z1 and z2 disagree"),
        ({"z2": torch.randn(4, 2)}, ValueError, "z1 and z2 disagree"),
        ({"z2": Z.double()}, TypeError, "z1 and z2 must share a dtype"),
        ({"assignments": None}, ValueError, "must be given together, got only prototypes"),
        ({"prototypes": None}, ValueError, "must be given together, got only assignments"),
        ({"prototypes": torch.randn(2, 5)}, ValueError, "z1 and prototypes disagree"),
        ({"prototypes": torch.randn(6)}, ValueError, r"prototypes must have shape \(k, d\)"),
        ({"prototypes": torch.randn(0, 3)}, ValueError, "prototypes must not be empty"),
        ({"prototypes": MU.double()}, TypeError, "prototypes must share the dtype"),
        ({"prototypes": torch.ones(2, 3, dtype=torch.int64)}, TypeError, "prototypes must be a fl"),
        ({"assignments": torch.tensor([0, 1, 2, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": torch.tensor([0, -1, 1, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": H.double()}, TypeError, "assignments must be an integer"),
        ({"assignments": torch.tensor([0, 1])}, ValueError, "z1 and assignments disagree"),
        ({"assignments": H.view(2, 2)}, ValueError, r"assignments must have shape \(b,\)"),
        ({"labels": torch.tensor([0, 1])}, ValueError, "z1 and labels disagree"),
        ({"labels": torch.ones(4)}, TypeError, "labels must be an integer"),
        ({"labels": H.view(4, 1)}, ValueError, r"labels must have shape \(b,\)"),
        ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
        ({"temperature": -1.0}, ValueError, "temperature must be > 0"),
        ({"temperature": float("inf")}, ValueError, "temperature must be finite"),
        ({"temperature": "hot"}, TypeError, "temperature must be a float"),
        ({"similarity": "l2"}, ValueError, "similarity must be one of"),
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    arguments = {"z1": Z, "z2": Z + 1, "prototypes": MU, "assignments": H}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        intent_info_nce(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
        ({"temperature": None}, TypeError, "temperature must be a float"),
        ({"similarity": "euclid"}, ValueError, "similarity must be one of"),
        ({"reduction": "max"}, ValueError, "reduction must be one of"),
    ],
)
def test_module_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        IntentInfoNCE(**kwargs)
