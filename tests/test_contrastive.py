"""Tests for ``s4rec_components.contrastive``: Eq. 13-14 against loop references, ICLRec, laws."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from s4rec_components import IntentInfoNCE, intent_info_nce, set_validate_args

similarities = st.sampled_from(["dot", "cosine"])
temperatures = st.floats(min_value=0.05, max_value=5.0)
small = st.integers(min_value=1, max_value=7)
# Values on a grid of 0.01 in [-2, 2]: they shrink towards 0 and a non-zero row has a norm
# far above the cosine's epsilon.
values = st.integers(min_value=-200, max_value=200).map(lambda i: i / 100)


@dataclass
class Batch:
    """Inputs of one call: two views, optional prototypes / assignments / groups."""

    z1: torch.Tensor
    z2: torch.Tensor
    prototypes: torch.Tensor | None
    assignments: torch.Tensor | None
    groups: torch.Tensor | None


@st.composite
def matrices(draw: Any, rows: int, cols: int) -> torch.Tensor:
    """A float64 ``(rows, cols)`` tensor whose entries hypothesis draws (and shrinks)."""
    flat = draw(st.lists(values, min_size=rows * cols, max_size=rows * cols))
    return torch.tensor(flat, dtype=torch.float64).reshape(rows, cols)


@st.composite
def integer_vectors(draw: Any, size: int, high: int) -> torch.Tensor:
    """A ``(size,)`` long tensor with entries in ``[0, high]``."""
    return torch.tensor(draw(st.lists(st.integers(0, high), min_size=size, max_size=size)),
                        dtype=torch.long)


@st.composite
def batches(
    draw: Any,
    with_prototypes: st.SearchStrategy[bool] = st.booleans(),
    with_groups: st.SearchStrategy[bool] = st.booleans(),
    min_batch: int = 1,
) -> Batch:
    """Draw b, d, k, then float64 views and prototypes, and integer assignments / groups."""
    b = draw(st.integers(min_value=min_batch, max_value=7))
    d, k = draw(small), draw(small)
    z1, z2 = draw(matrices(b, d)), draw(matrices(b, d))
    prototypes = assignments = groups = None
    if draw(with_prototypes):
        prototypes = draw(matrices(k, d))
        assignments = draw(integer_vectors(b, k - 1))
    if draw(with_groups):
        groups = draw(integer_vectors(b, b // 2))
    return Batch(z1, z2, prototypes, assignments, groups)


def call(batch: Batch, **kwargs: Any) -> torch.Tensor:
    return intent_info_nce(
        batch.z1, batch.z2, batch.prototypes, batch.assignments, batch.groups, **kwargs
    )


def reference(
    batch: Batch, temperature: float, similarity: str, positive_in_denominator: bool = True
) -> torch.Tensor:
    """``(2b,)`` per-anchor losses, transcribed term by term from Eq. 14 with Python loops.

    Anchors are the rows of ``z1`` then those of ``z2``; the cosine normalises each vector by
    ``max(norm, 1e-12)`` as documented. Without the positive in the denominator (the printed
    form), an anchor with no negative has loss 0.
    """

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / max(float(x.norm()), 1e-12)

    def sim(a: torch.Tensor, c: torch.Tensor) -> float:
        a, c = a.double(), c.double()
        if similarity == "cosine":
            a, c = unit(a), unit(c)
        return float(a @ c) / temperature

    b = batch.z1.shape[0]
    views = (batch.z1, batch.z2)
    out = torch.zeros(2 * b, dtype=torch.float64)
    for view in range(2):
        for u in range(b):
            anchor = views[view][u]
            positive = sim(anchor, views[1 - view][u])
            terms = [positive] if positive_in_denominator else []
            for v in range(b):
                if v == u:
                    continue
                if batch.groups is not None and int(batch.groups[v]) == int(batch.groups[u]):
                    continue
                terms.append(sim(anchor, batch.z1[v]))
                terms.append(sim(anchor, batch.z2[v]))
            if batch.prototypes is not None and batch.assignments is not None:
                for k in range(batch.prototypes.shape[0]):
                    if k != int(batch.assignments[u]):
                        terms.append(sim(anchor, batch.prototypes[k]))
            if not terms:
                continue
            peak = max(terms)
            log_denominator = peak + math.log(math.fsum(math.exp(t - peak) for t in terms))
            out[view * b + u] = log_denominator - positive
    return out


def iclrec_nce(
    one: torch.Tensor, two: torch.Tensor, intent_ids: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    """ICLRec's ``NCELoss`` (src/modules.py), transcribed in float64.

    Three dot-product blocks ``s11 = one one^T``, ``s22 = two two^T``, ``s12 = one two^T``
    over the temperature. With ``intent_ids``, entries of equal ids are set to ``-inf`` in
    ``s11`` and ``s22`` (the diagonal included) and in ``s12`` off the diagonal; without,
    only the diagonals of ``s11`` and ``s22``. The logits are ``[[s12, s11], [s22, s12^T]]``
    (the masked ``s12`` is transposed), row ``i`` has target ``i``, and the loss is the mean
    cross-entropy over the ``2b`` rows.
    """
    one, two = one.double(), two.double()
    b = one.shape[0]
    eye = torch.eye(b, dtype=torch.bool)
    s11, s22, s12 = one @ one.T, two @ two.T, one @ two.T
    s11, s22, s12 = s11 / temperature, s22 / temperature, s12 / temperature
    if intent_ids is not None:
        same = intent_ids.view(-1, 1) == intent_ids.view(1, -1)
        s11 = s11.masked_fill(same, float("-inf"))
        s22 = s22.masked_fill(same, float("-inf"))
        s12 = s12.masked_fill(same & ~eye, float("-inf"))
    else:
        s11 = s11.masked_fill(eye, float("-inf"))
        s22 = s22.masked_fill(eye, float("-inf"))
    logits = torch.cat([torch.cat([s12, s11], dim=1), torch.cat([s22, s12.T], dim=1)])
    return F.cross_entropy(logits, torch.arange(2 * b))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: 2b anchors, positives b apart, self-similarity removed, mean."""
    b = z1.shape[0]
    z = torch.cat([z1, z2])
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    targets = (torch.arange(2 * b) + b) % (2 * b)
    return F.cross_entropy(logits, targets)


def swap_halves(x: torch.Tensor) -> torch.Tensor:
    """``(2b,)`` per-anchor losses with the two views' halves exchanged."""
    b = x.shape[0] // 2
    return torch.cat([x[b:], x[:b]])


# ----------------------------------------------------------------------------- references


@given(batch=batches(), temperature=temperatures, similarity=similarities)
def test_equals_loop_reference(batch: Batch, temperature: float, similarity: str) -> None:
    expected = reference(batch, temperature, similarity)
    none = call(batch, temperature=temperature, similarity=similarity, reduction="none")
    torch.testing.assert_close(none, expected)
    mean = call(batch, temperature=temperature, similarity=similarity)
    torch.testing.assert_close(mean, expected.mean())
    total = call(batch, temperature=temperature, similarity=similarity, reduction="sum")
    torch.testing.assert_close(total, expected.sum())


@given(batch=batches(), temperature=temperatures, similarity=similarities)
def test_printed_form_equals_loop_reference(batch: Batch, temperature: float, similarity: str) -> None:
    """``positive_in_denominator=False``: Eq. 13-14 as printed, the positive only on top."""
    expected = reference(batch, temperature, similarity, positive_in_denominator=False)
    kwargs: dict[str, Any] = {"temperature": temperature, "similarity": similarity,
                              "positive_in_denominator": False}
    torch.testing.assert_close(call(batch, reduction="none", **kwargs), expected)
    torch.testing.assert_close(call(batch, **kwargs), expected.mean())
    module = IntentInfoNCE(reduction="sum", **kwargs)
    torch.testing.assert_close(
        module(batch.z1, batch.z2, batch.prototypes, batch.assignments, batch.groups), expected.sum()
    )


@given(batch=batches(with_groups=st.just(False), min_batch=2), temperature=temperatures,
       similarity=similarities)
def test_usual_form_is_softplus_of_the_printed_one(
    batch: Batch, temperature: float, similarity: str
) -> None:
    """With a negative in every denominator, log(e^p + N) - p = log(1 + e^(log N - p))."""
    kwargs: dict[str, Any] = {"temperature": temperature, "similarity": similarity, "reduction": "none"}
    printed = call(batch, positive_in_denominator=False, **kwargs)
    torch.testing.assert_close(call(batch, **kwargs), F.softplus(printed))


def test_printed_form_without_negatives_is_zero_with_a_zero_gradient() -> None:
    """One sample and no prototypes, or every other sample in the anchor's group."""
    lone = torch.randn(1, 4, requires_grad=True)
    loss = intent_info_nce(lone, lone * 2, positive_in_denominator=False)
    loss.backward()
    assert float(loss.detach()) == 0.0 and lone.grad is not None and bool((lone.grad == 0).all())
    z = torch.randn(3, 4, requires_grad=True)
    same = torch.zeros(3, dtype=torch.long)
    losses = intent_info_nce(z, z + 1, groups=same, positive_in_denominator=False, reduction="none")
    losses.sum().backward()
    assert bool((losses == 0).all()) and z.grad is not None and bool((z.grad == 0).all())


@given(batch=batches(with_prototypes=st.just(True)), similarity=similarities)
def test_printed_form_gradients_finite(batch: Batch, similarity: str) -> None:
    assert batch.prototypes is not None
    inputs = [x.clone().requires_grad_(True) for x in (batch.z1, batch.z2, batch.prototypes)]
    loss = intent_info_nce(*inputs, batch.assignments, batch.groups, similarity=similarity,
                           positive_in_denominator=False)
    loss.backward()
    for tensor in inputs:
        assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all())


@st.composite
def iclrec_batches(draw: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views ``(b, d)``, centroids ``(k, d)`` and intent ids ``(b,)`` (repeats likely)."""
    b, d, k = draw(small), draw(small), draw(st.integers(1, 4))
    return (draw(matrices(b, d)), draw(matrices(b, d)), draw(matrices(k, d)),
            draw(integer_vectors(b, k - 1)))


@given(data=iclrec_batches(), temperature=temperatures)
def test_iclrec_intent_loss(
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], temperature: float
) -> None:
    """ICLRec's intent loss of a view is ``intent_info_nce(view, c[ids], groups=ids)``."""
    view1, view2, centroids, ids = data
    intents = centroids[ids]
    for view in (view1, view2):
        torch.testing.assert_close(
            intent_info_nce(view, intents, groups=ids, temperature=temperature),
            iclrec_nce(view, intents, ids, temperature),
        )
        # no de-noising: the repeated centroid rows are each other's negatives
        torch.testing.assert_close(
            intent_info_nce(view, intents, temperature=temperature),
            iclrec_nce(view, intents, None, temperature),
        )
    # PCLoss with one intent set: the mean of the two views' NCE
    pcl = (iclrec_nce(view1, intents, ids, temperature)
           + iclrec_nce(view2, intents, ids, temperature)) / 2
    ours = (intent_info_nce(view1, intents, groups=ids, temperature=temperature)
            + intent_info_nce(view2, intents, groups=ids, temperature=temperature)) / 2
    torch.testing.assert_close(ours, pcl)


@given(batch=batches(with_prototypes=st.just(False)), temperature=temperatures)
def test_groups_equal_iclrec_masking_for_any_views(batch: Batch, temperature: float) -> None:
    """ICLRec's masking and ``groups`` agree on arbitrary views, not only on centroids."""
    torch.testing.assert_close(
        intent_info_nce(batch.z1, batch.z2, groups=batch.groups, temperature=temperature),
        iclrec_nce(batch.z1, batch.z2, batch.groups, temperature),
    )


@given(batch=batches(with_prototypes=st.just(False), with_groups=st.just(False)),
       temperature=temperatures)
def test_without_prototypes_is_nt_xent(batch: Batch, temperature: float) -> None:
    loss = intent_info_nce(batch.z1, batch.z2, temperature=temperature)
    torch.testing.assert_close(loss, nt_xent(batch.z1, batch.z2, temperature))


# ----------------------------------------------------------------------------- laws


@given(batch=batches(), temperature=temperatures, similarity=similarities)
def test_symmetric_in_the_views(batch: Batch, temperature: float, similarity: str) -> None:
    swapped = replace(batch, z1=batch.z2, z2=batch.z1)
    kwargs: dict[str, Any] = {"temperature": temperature, "similarity": similarity}
    torch.testing.assert_close(call(swapped, **kwargs), call(batch, **kwargs))
    torch.testing.assert_close(
        call(swapped, reduction="none", **kwargs),
        swap_halves(call(batch, reduction="none", **kwargs)),
    )


@given(batch=batches(), temperature=temperatures, similarity=similarities)
def test_non_negative(batch: Batch, temperature: float, similarity: str) -> None:
    losses = call(batch, temperature=temperature, similarity=similarity, reduction="none")
    assert bool((losses >= 0).all())


@given(data=st.data(), batch=batches(), similarity=similarities)
def test_permutation_equivariant(data: st.DataObject, batch: Batch, similarity: str) -> None:
    b = batch.z1.shape[0]
    perm = torch.tensor(data.draw(st.permutations(range(b))), dtype=torch.long)

    def pick(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[perm]

    permuted = Batch(batch.z1[perm], batch.z2[perm], batch.prototypes,
                     pick(batch.assignments), pick(batch.groups))
    torch.testing.assert_close(
        call(permuted, similarity=similarity, reduction="none"),
        call(batch, similarity=similarity, reduction="none")[torch.cat([perm, perm + b])],
    )


@given(batch=batches(), scale=st.floats(min_value=0.2, max_value=3.0), temperature=temperatures)
def test_dot_scaling_trades_against_temperature(
    batch: Batch, scale: float, temperature: float
) -> None:
    """Dot logits of c z / (c^2 tau) equal those of z / tau."""
    scaled = replace(
        batch, z1=batch.z1 * scale, z2=batch.z2 * scale,
        prototypes=None if batch.prototypes is None else batch.prototypes * scale,
    )
    torch.testing.assert_close(
        call(scaled, temperature=temperature * scale**2), call(batch, temperature=temperature)
    )


@given(batch=batches(), scale=st.floats(min_value=0.2, max_value=3.0))
def test_cosine_ignores_norms(batch: Batch, scale: float) -> None:
    scaled = replace(batch, z1=batch.z1 * scale, z2=batch.z2 * (scale + 1.0))
    torch.testing.assert_close(call(scaled, similarity="cosine"), call(batch, similarity="cosine"))


@given(batch=batches())
def test_groups_of_singletons_change_nothing(batch: Batch) -> None:
    distinct = torch.arange(batch.z1.shape[0])
    torch.testing.assert_close(
        call(replace(batch, groups=distinct)), call(replace(batch, groups=None))
    )


# ----------------------------------------------------------------------------- closed forms


@given(b=small, d=small, k=small, use_prototypes=st.booleans(), temperature=temperatures)
def test_all_equal_similarities_give_log_candidates(
    b: int, d: int, k: int, use_prototypes: bool, temperature: float
) -> None:
    z = torch.zeros(b, d, dtype=torch.float64)
    prototypes = torch.zeros(k, d, dtype=torch.float64) if use_prototypes else None
    assignments = torch.arange(b) % k if use_prototypes else None
    candidates = 2 * b - 1 + (k - 1 if use_prototypes else 0)
    none = intent_info_nce(z, z, prototypes, assignments, temperature=temperature,
                           reduction="none")
    torch.testing.assert_close(none, torch.full((2 * b,), math.log(candidates),
                                                dtype=torch.float64))
    mean = intent_info_nce(z, z, prototypes, assignments, temperature=temperature)
    torch.testing.assert_close(mean, torch.tensor(math.log(candidates), dtype=torch.float64))


def test_cosine_all_equal_vectors_closed_form() -> None:
    v = torch.tensor([[0.3, -1.2, 2.0]])
    b, k = 5, 4
    z = v.expand(b, 3) * torch.arange(1.0, b + 1).unsqueeze(1)  # same direction, other norms
    mu = v.expand(k, 3) * 7.0
    loss = intent_info_nce(z, z, mu, torch.tensor([0, 1, 2, 3, 0]), similarity="cosine")
    torch.testing.assert_close(loss, torch.tensor(math.log(2 * b - 1 + k - 1)))


def test_single_sample_without_prototypes_is_zero() -> None:
    loss = intent_info_nce(torch.randn(1, 4), torch.randn(1, 4), reduction="none")
    torch.testing.assert_close(loss, torch.zeros(2))
    # With prototypes, the k - 1 non-assigned intents are still negatives.
    z = torch.zeros(1, 4)
    loss = intent_info_nce(z, z, torch.zeros(3, 4), torch.tensor([1]))
    torch.testing.assert_close(loss, torch.tensor(math.log(3.0)))


def test_groups_mask_negatives() -> None:
    """All-equal similarities: only rows of another group (and intents) stay candidates."""
    groups = torch.tensor([0, 0, 1, 2, 2, 2])
    z = torch.zeros(6, 2)
    none = intent_info_nce(z, z, groups=groups, reduction="none")
    others = (groups.unsqueeze(1) != groups.unsqueeze(0)).sum(dim=1).float()
    torch.testing.assert_close(none, torch.log(1 + 2 * others).repeat(2))
    # One group for all: the positive is the only candidate.
    one_group = torch.zeros(4, dtype=torch.long)
    same = intent_info_nce(torch.randn(4, 3), torch.randn(4, 3), groups=one_group)
    torch.testing.assert_close(same, torch.tensor(0.0))


def test_assigned_prototype_is_not_a_negative() -> None:
    """Moving the assigned prototype onto the anchor changes nothing; moving another does."""
    z1 = torch.tensor([[1.0, 0.0]])
    z2 = torch.tensor([[0.0, 1.0]])
    far = torch.tensor([[-5.0, 0.0], [-5.0, 0.0]])
    near_assigned = torch.tensor([[5.0, 0.0], [-5.0, 0.0]])
    near_other = torch.tensor([[-5.0, 0.0], [5.0, 0.0]])
    h = torch.tensor([0])
    base = intent_info_nce(z1, z2, far, h)
    torch.testing.assert_close(intent_info_nce(z1, z2, near_assigned, h), base)
    assert intent_info_nce(z1, z2, near_other, h) > base + 0.5


# ----------------------------------------------------------------------------- autograd


@given(batch=batches(with_prototypes=st.just(True)), similarity=similarities)
def test_gradients_finite(batch: Batch, similarity: str) -> None:
    z1 = batch.z1.clone()
    z1[0] = 0.0  # a zero vector must not give nan under cosine either
    z1.requires_grad_(True)
    z2 = batch.z2.clone().requires_grad_(True)
    assert batch.prototypes is not None
    mu = batch.prototypes.clone().requires_grad_(True)
    loss = intent_info_nce(z1, z2, mu, batch.assignments, batch.groups, similarity=similarity)
    loss.backward()
    for tensor in (z1, z2, mu):
        assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all())


@settings(max_examples=5)
@given(batch=batches(with_prototypes=st.just(True)))
def test_gradients_match_finite_differences(batch: Batch) -> None:
    assert batch.prototypes is not None
    inputs = tuple(x.clone().requires_grad_(True) for x in (batch.z1, batch.z2, batch.prototypes))
    assert torch.autograd.gradcheck(
        lambda a, c, m: intent_info_nce(a, c, m, batch.assignments, batch.groups), inputs
    )


# ----------------------------------------------------------------------------- dtypes


def test_half_precision_at_extreme_temperature_is_finite() -> None:
    """Issue 9: fp16 (256, 128) at temperature 1e-3 gave inf; now float32 and finite."""
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(256, 128, generator=g).half()
    z2 = torch.randn(256, 128, generator=g).half()
    low = intent_info_nce(z1, z2, temperature=1e-3)
    assert low.dtype == torch.float32 and bool(torch.isfinite(low))
    exact = intent_info_nce(z1.double(), z2.double(), temperature=1e-3)
    assert abs(low.double() - exact) / exact < 1e-5


def test_the_mean_is_finite_where_every_anchor_loss_is() -> None:
    """At temperature 1e-37 each anchor's loss is about 5e37 (finite in float32) but their sum
    is not: the mean must scale before it sums (review of 2026-12-06)."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    losses = intent_info_nce(z1, z2, temperature=1e-37, reduction="none")
    assert torch.isfinite(losses).all() and not torch.isfinite(losses.sum())
    mean = intent_info_nce(z1, z2, temperature=1e-37)
    assert torch.isfinite(mean) and abs(mean.double() / losses.double().mean() - 1) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(6, 8, generator=g).to(dtype), torch.randn(6, 8, generator=g).to(dtype)
    mu = torch.randn(3, 8, generator=g).to(dtype)
    h = torch.tensor([0, 1, 2, 0, 1, 2])
    low = intent_info_nce(z1, z2, mu, h, temperature=0.1)
    assert low.dtype == torch.float32 and bool(torch.isfinite(low))
    full = intent_info_nce(z1.float(), z2.float(), mu.float(), h, temperature=0.1)
    torch.testing.assert_close(low, full)


@pytest.mark.parametrize(
    ("dtypes", "expected"),
    [
        ((torch.float16, torch.float32, torch.float16), torch.float32),
        ((torch.float16, torch.bfloat16, torch.bfloat16), torch.float32),
        ((torch.float32, torch.float32, torch.float64), torch.float64),
        ((torch.float64, torch.float16, torch.float32), torch.float64),
    ],
)
def test_mixed_dtypes_are_promoted(dtypes: tuple[torch.dtype, ...], expected: torch.dtype) -> None:
    g = torch.Generator().manual_seed(5)
    z1, z2, mu = (torch.randn(shape, generator=g).to(dtype)
                  for shape, dtype in zip([(5, 4), (5, 4), (3, 4)], dtypes))
    h = torch.tensor([0, 1, 2, 2, 0])
    loss = intent_info_nce(z1, z2, mu, h)
    assert loss.dtype == expected
    torch.testing.assert_close(loss, intent_info_nce(z1.to(expected), z2.to(expected),
                                                     mu.to(expected), h))


# ----------------------------------------------------------------------------- module, flags


@given(batch=batches(), temperature=temperatures, similarity=similarities,
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_module_equals_function(
    batch: Batch, temperature: float, similarity: str, reduction: str
) -> None:
    module = IntentInfoNCE(temperature=temperature, similarity=similarity,  # type: ignore[arg-type]
                           reduction=reduction)  # type: ignore[arg-type]
    torch.testing.assert_close(
        module(batch.z1, batch.z2, batch.prototypes, batch.assignments, batch.groups),
        call(batch, temperature=temperature, similarity=similarity, reduction=reduction),
    )
    assert f"similarity={similarity!r}" in repr(module)


@given(batch=batches())
def test_gather_without_process_group_changes_nothing(batch: Batch) -> None:
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(
            call(batch, reduction=reduction, gather_distributed=True),
            call(batch, reduction=reduction),
        )


def test_empty_batch_only_inside_a_process_group() -> None:
    """An empty rank is allowed when rows are gathered from other processes (tested with gloo
    in test_distributed_contrastive.py); without a process group the flag changes nothing, so an
    empty batch is refused with it as without it."""
    empty = torch.zeros(0, 3)
    for gather in (False, True):
        with pytest.raises(ValueError, match="z1 must not be empty"):
            intent_info_nce(empty, empty, gather_distributed=gather)
        with pytest.raises(ValueError, match="z1 must not be empty"):
            IntentInfoNCE(gather_distributed=gather)(empty, empty)


# ----------------------------------------------------------------------------- host reads


@contextlib.contextmanager
def count_host_reads() -> Iterator[list[str]]:
    """Count the Python-level ways a tensor's values reach the host while the block runs.

    Patches ``item``, ``tolist``, ``bool``/``int``/``float``/``index`` conversions,
    ``nonzero``, ``unique`` and boolean-mask indexing; yields the list of names seen.
    """
    seen: list[str] = []
    patches: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            return original(*args, **kwargs)

        patches.append((owner, name, original))
        setattr(owner, name, counted)

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__",
                 "nonzero", "unique", "numpy"):
        wrap(torch.Tensor, name)
    for name in ("nonzero", "unique", "masked_select"):
        wrap(torch, name)
    getitem = torch.Tensor.__getitem__

    def checked_getitem(self: torch.Tensor, index: Any) -> Any:
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            seen.append("bool-mask index")
        return getitem(self, index)

    patches.append((torch.Tensor, "__getitem__", getitem))
    torch.Tensor.__getitem__ = checked_getitem  # type: ignore[method-assign, assignment]
    try:
        yield seen
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def test_no_host_reads_with_validation_off() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2, mu = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g), torch.randn(3, 4)
    h, groups = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    z1.requires_grad_(True)
    module = IntentInfoNCE(temperature=0.2, similarity="cosine")
    with count_host_reads() as on:
        module(z1, z2, mu, h, groups)
    assert on, "the counter must see the range check of assignments"
    set_validate_args(False)
    try:
        with count_host_reads() as off:
            module(z1, z2, mu, h, groups).backward()
            intent_info_nce(z1.half(), z2, mu, h, groups, reduction="none")
    finally:
        set_validate_args(True)
    assert off == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_synchronisation_on_cuda_with_validation_off() -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    z1 = torch.randn(64, 16, device="cuda", generator=g, requires_grad=True)
    z2 = torch.randn(64, 16, device="cuda", generator=g).half()
    mu = torch.randn(8, 16, device="cuda", generator=g)
    h = torch.randint(0, 8, (64,), device="cuda", generator=g)
    module = IntentInfoNCE(temperature=0.1, similarity="cosine")
    set_validate_args(False)
    torch.cuda.set_sync_debug_mode("error")
    try:
        module(z1, z2, mu, h, h).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
        set_validate_args(True)
    assert z1.grad is not None


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
        ({"z1": torch.randn(0, 3), "z2": torch.randn(0, 3), "prototypes": None,
          "assignments": None}, ValueError, "z1 must not be empty"),
        ({"z1": torch.randn(4, 0), "z2": torch.randn(4, 0), "prototypes": None,
          "assignments": None}, ValueError, "z1 must not be empty"),
        ({"z2": torch.randn(5, 3)}, ValueError, "z1 and z2 disagree"),
        ({"z2": torch.randn(4, 2)}, ValueError, "z1 and z2 disagree"),
        ({"assignments": None}, ValueError, "must be given together, got only prototypes"),
        ({"prototypes": None}, ValueError, "must be given together, got only assignments"),
        ({"prototypes": torch.randn(2, 5)}, ValueError, "z1 and prototypes disagree"),
        ({"prototypes": torch.randn(6)}, ValueError, r"prototypes must have shape \(k, d\)"),
        ({"prototypes": torch.randn(0, 3)}, ValueError, "prototypes must not be empty"),
        ({"prototypes": torch.ones(2, 3, dtype=torch.int64)}, TypeError, "prototypes must be a fl"),
        ({"assignments": torch.tensor([0, 1, 2, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": torch.tensor([0, -1, 1, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": H.double()}, TypeError, "assignments must be an integer"),
        ({"assignments": torch.tensor([0, 1])}, ValueError, "z1 and assignments disagree"),
        ({"assignments": H.view(2, 2)}, ValueError, r"assignments must have shape \(b,\)"),
        ({"groups": torch.tensor([0, 1])}, ValueError, "z1 and groups disagree"),
        ({"groups": torch.ones(4)}, TypeError, "groups must be an integer"),
        ({"groups": H.view(4, 1)}, ValueError, r"groups must have shape \(b,\)"),
        ({"temperature": 0.0}, ValueError, r"temperature must lie in \(0, inf\)"),
        ({"temperature": -1.0}, ValueError, r"temperature must lie in \(0, inf\)"),
        ({"temperature": float("inf")}, ValueError, "temperature must be finite"),
        ({"temperature": float("nan")}, ValueError, "temperature must be finite"),
        ({"temperature": "hot"}, TypeError, "temperature must be a real number"),
        ({"temperature": True}, TypeError, "temperature must be a real number"),
        ({"similarity": "l2"}, ValueError, "similarity must be one of"),
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
        ({"gather_distributed": 1}, TypeError, "gather_distributed must be a bool"),
        ({"positive_in_denominator": "no"}, TypeError, "positive_in_denominator must be a bool"),
    ],
)
def test_bad_inputs(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments: dict[str, Any] = {"z1": Z, "z2": Z + 1, "prototypes": MU, "assignments": H}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        intent_info_nce(**arguments)


def test_range_check_skipped_with_validation_off() -> None:
    good = torch.tensor([0, 1, 1, 0])
    with count_host_reads() as on:
        intent_info_nce(Z, Z + 1, MU, good)
    assert on, "with the checks on, the range check reads the assignments"
    set_validate_args(False)
    try:
        with count_host_reads() as off:
            intent_info_nce(Z, Z + 1, MU, good)  # in range; the check is skipped: nothing read back
    finally:
        set_validate_args(True)
    assert off == []
    with pytest.raises(ValueError, match=OUT_OF_RANGE):
        intent_info_nce(Z, Z + 1, MU, torch.tensor([0, 1, 1, 5]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, r"temperature must lie in \(0, inf\)"),
        ({"temperature": None}, TypeError, "temperature must be a real number"),
        ({"temperature": float("inf")}, ValueError, "temperature must be finite"),
        ({"temperature": "0.1"}, TypeError, "temperature must be a real number"),
        ({"similarity": "euclid"}, ValueError, "similarity must be one of"),
        ({"reduction": "max"}, ValueError, "reduction must be one of"),
        ({"gather_distributed": "yes"}, TypeError, "gather_distributed must be a bool"),
        ({"positive_in_denominator": 0}, TypeError, "positive_in_denominator must be a bool"),
    ],
)
def test_module_bad_hyperparameters(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        IntentInfoNCE(**kwargs)


def test_module_hyperparameters_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        IntentInfoNCE(0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        intent_info_nce(Z, Z, None, None, None, 0.5)  # type: ignore[call-arg]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cosine_zero_row_has_a_zero_gradient_and_keeps_the_others_finite(dtype: torch.dtype) -> None:
    """An all-padding view pooled by its mean is a zero row. F.normalize would divide it by its
    epsilon: a 1e12-times gradient in float32, inf (then NaN) in float16."""
    torch.manual_seed(3)
    x = torch.randn(4, 8).to(dtype).requires_grad_(True)
    keep = torch.ones(4, 1, dtype=dtype)
    keep[0] = 0
    z1, z2 = x * keep, torch.randn(4, 8).to(dtype)
    loss = intent_info_nce(z1, z2, similarity="cosine")
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[0], torch.zeros(8, dtype=dtype))
    # the other rows: the same loss as the cosine written out, where the zero row scores 0
    z = torch.cat([z1, z2]).double()
    unit = torch.where(z.norm(dim=1, keepdim=True) > 0, z / z.norm(dim=1, keepdim=True).clamp_min(1e-300), 0.0)
    logits = (unit @ unit.T).fill_diagonal_(float("-inf"))
    want = F.cross_entropy(logits, torch.cat([torch.arange(4, 8), torch.arange(4)]))
    torch.testing.assert_close(loss.double(), want, atol=1e-3 if dtype == torch.float16 else 1e-6, rtol=1e-3)
