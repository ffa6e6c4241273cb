"""Inputs an adversarial reviewer tried (2026-12-05): each once gave a silently wrong result, a
crash deep inside torch, or an error that named the wrong argument.

The laws: every integer dtype indexes as int64 does; a value that the float32 kernels cannot
represent is refused at the boundary, naming the argument; shape-only (``meta``) tensors pass
through the value checks; a huge cut-off costs nothing and means "every rank".
"""

from __future__ import annotations

import dataclasses
import time

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

import s4rec_components as s4
from s4rec_components import (
    GradientReversal,
    HeadTailAdversary,
    KMeans,
    Ragged,
    SASRecEncoder,
    SequenceAugmenter,
    SequenceDataset,
    evaluate_ranking,
    head_tail_adversarial_loss,
    intent_info_nce,
    k_means,
    linear_cross_entropy,
    online_clustering,
    prototype_distillation,
    ranking_metrics,
    sampled_bce,
    sinkhorn_knopp,
)
from s4rec_components._validation import MIN_DIVISOR
from s4rec_components.ragged import RowIndexError

NARROW_INTS = [torch.int8, torch.int16, torch.int32, torch.uint8]


# ------------------------------------------------------------------ integer dtypes
@pytest.mark.parametrize("dtype", NARROW_INTS)
def test_every_integer_dtype_indexes_as_int64_does(dtype):
    torch.manual_seed(0)
    encoder = SASRecEncoder(10, hidden_size=4, max_len=5, num_layers=1).eval()
    ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    narrow = ids.to(dtype)
    assert torch.equal(encoder(narrow), encoder(ids))
    assert torch.equal(encoder.represent(narrow, pooling="mean"), encoder.represent(ids, pooling="mean"))
    assert torch.equal(encoder.embed_items(narrow), encoder.embed_items(ids))

    h, table = torch.randn(3, 4), torch.randn(8, 4)
    targets, negatives = torch.tensor([1, 5, 7]), torch.tensor([2, 3, 4])
    assert torch.equal(linear_cross_entropy(h, table, targets.to(dtype)), linear_cross_entropy(h, table, targets))
    assert torch.equal(sampled_bce(h, table, targets.to(dtype), negatives.to(dtype)),
                       sampled_bce(h, table, targets, negatives))

    labels, weight = torch.tensor([0, 1, 1]), torch.randn(2, 4)
    assert torch.equal(head_tail_adversarial_loss(h, labels.to(dtype), weight).loss,
                       head_tail_adversarial_loss(h, labels, weight).loss)

    rows = Ragged.from_lists([[3, 1], [], [7, 7, 2]])
    index = torch.tensor([2, 2, 0, 1])  # a uint8 index once selected as a boolean mask
    assert torch.equal(rows.pad_rows(index.to(dtype)), rows.pad_rows(index))


SHELL_UNSIGNED = [torch.uint16, torch.uint32, torch.uint64]


@pytest.mark.parametrize("dtype", SHELL_UNSIGNED)
def test_wide_unsigned_ids_are_refused_at_the_boundary(dtype):
    """uint16 / uint32 / uint64 (``torch.from_numpy`` of such arrays) have no ``min``, ``gather`` or
    ``embedding`` kernels: each public entry refuses them with a TypeError that names the
    argument and the dtype, never a NotImplementedError from deep inside torch (review of
    2026-12-06)."""
    def wide(*values):
        return torch.tensor(values).to(dtype)

    encoder = SASRecEncoder(10, hidden_size=4, max_len=5, num_layers=1)
    h, table, z, mu = torch.randn(3, 4), torch.randn(8, 4), torch.randn(3, 4), torch.randn(2, 4)
    ids, three = wide(0, 1, 2, 3).unsqueeze(0), torch.tensor([1, 0, 1])
    calls = {
        "item_ids": [lambda: encoder(ids), lambda: encoder.represent(ids, pooling="mean"),
                     lambda: encoder.embed_items(ids), lambda: SequenceAugmenter(10)(ids),
                     lambda: s4.mask_items(ids, num_items=10)],
        "targets": [lambda: linear_cross_entropy(h, table, wide(1, 2, 3)),
                    lambda: s4.rank_targets(table, wide(*range(8))),
                    lambda: evaluate_ranking(lambda x: table[x[:, 0]], torch.arange(2)[:, None], wide(1, 2))],
        "positives": [lambda: sampled_bce(h, table, wide(1, 2, 3), three)],
        "labels": [lambda: head_tail_adversarial_loss(h, wide(0, 1, 1), torch.randn(2, 4))],
        "assignments": [lambda: intent_info_nce(z, z, mu, wide(0, 1, 1)),
                        lambda: prototype_distillation(z, mu, wide(0, 1, 1))],
        "ranks": [lambda: ranking_metrics(wide(0, 3, 9))],
        "index": [lambda: Ragged.from_lists([[3, 1], [], [7]]).pad_rows(wide(2, 0))],
    }
    for name, fns in calls.items():
        for fn in fns:
            with pytest.raises(TypeError, match=rf"{name}.*{dtype}.*\.long\(\)"):
                fn()


def test_ragged_membership_refuses_values_beyond_num_values():
    """Keys ``row * (num_values + 1) + value`` collide across rows when a value exceeds it."""
    rows = Ragged.from_lists([[5], []])
    with pytest.raises(ValueError, match=r"stored values \(for num_values=3\)"):
        rows.contains(torch.tensor([1]), torch.tensor([1]), num_values=3)
    with pytest.raises(ValueError, match="stored values"):
        rows.sorted_keys(3)
    assert rows.contains(torch.tensor([1, 0]), torch.tensor([1, 5]), num_values=5).tolist() == [False, True]


# ------------------------------------------------------------------ datasets
@pytest.mark.parametrize("sequences, user_ids, error, match", [
    ([[1, 2.7, 3]], None, TypeError, r"sequences\[0\] entries must be an int, got float"),
    ([[True, 2, 3]], None, TypeError, r"sequences\[0\] entries must be an int, got bool"),
    (["123"], None, TypeError, r"sequences\[0\] must be a sequence of ints"),
    ([], None, ValueError, "sequences must hold at least one user"),
    ([[1, 2, 3]], [1.9], TypeError, "user_ids entries must be an int"),
    ([[1, 2, 3]], "1", TypeError, "user_ids must be a sequence of ints"),
])
def test_from_sequences_refuses_what_it_would_truncate(sequences, user_ids, error, match):
    with pytest.raises(error, match=match):
        SequenceDataset.from_sequences(sequences, user_ids)


def test_too_few_raw_ids_name_item_ids():
    with pytest.raises(ValueError, match="item_ids must have one raw id per internal item"):
        SequenceDataset.from_sequences([[1, 2, 3]], item_ids=["a"])


@given(st.integers(-6, 5))
def test_sequence_indexes_users_as_a_list_does(i):
    rows = [[1, 2, 3], [4, 5, 6, 7], [2, 2, 9]]
    data = SequenceDataset.from_sequences(rows)
    if -len(rows) <= i < len(rows):
        assert data.sequence(i).tolist() == rows[i]
    else:
        with pytest.raises(RowIndexError, match="out of range for 3 users"):
            data.sequence(i)


@pytest.mark.parametrize("bad", [True, 1.0, "0"])
def test_sequence_refuses_a_non_int_user(bad):
    with pytest.raises(TypeError, match="user must be an int"):
        SequenceDataset.from_sequences([[1, 2, 3]]).sequence(bad)


@pytest.mark.parametrize("user_ids, match", [([0, 1], "ids >= 1"), ([3, 3], "3 twice")])
def test_save_refuses_user_ids_the_format_cannot_hold(tmp_path, user_ids, match):
    data = SequenceDataset.from_sequences([[1, 2, 3], [4, 5, 6]], user_ids)
    with pytest.raises(ValueError, match=match):
        data.save(tmp_path / "data.txt")
    assert not (tmp_path / "data.txt").exists()  # nothing written


def test_a_sidecar_with_repeated_ids_is_named(tmp_path):
    path = SequenceDataset.from_sequences([[1, 2, 3]], item_ids=["a", "b", "c"]).save(tmp_path / "d.txt")
    sidecar = tmp_path / "d.txt.item_ids.json"
    sidecar.write_text(sidecar.read_text().replace('"c"', '"a"'))
    with pytest.raises(ValueError, match=r"d\.txt\.item_ids\.json: item id 'a' repeats \(at position 2\)"):
        s4.load_sequences(path)


def test_a_hand_built_split_must_fit_together():
    split = SequenceDataset.from_sequences([[4, 5, 6], [1, 2, 3, 4]]).split(max_len=2)
    fields = {f.name: getattr(split, f.name) for f in dataclasses.fields(split)}
    assert dataclasses.replace(split).num_users == 2  # the real one passes
    with pytest.raises(TypeError, match="train_inputs must be a torch.Tensor"):
        type(split)(**{**fields, "train_inputs": "x"})
    with pytest.raises(ValueError, match=r"test_inputs must have shape \(u, l\) = \(2, 2\)"):
        type(split)(**{**fields, "test_inputs": torch.zeros(2, 3, dtype=torch.long)})
    with pytest.raises(TypeError, match="user_items must be a Ragged"):
        type(split)(**{**fields, "user_items": [[1]]})
    with pytest.raises(ValueError, match=r"valid_history must have one row per user \(2\)"):
        type(split)(**{**fields, "valid_history": Ragged.from_lists([[1]])})
    with pytest.raises(TypeError, match="max_len must be an int"):
        type(split)(**{**fields, "max_len": "2"})


# ------------------------------------------------------------------ k-means
def test_kmeans_assign_checks_its_points_like_fit():
    km = KMeans(2, seed=0).fit(torch.tensor([[0.0], [1.0], [9.0], [10.0]]))
    with pytest.raises(ValueError, match="x must be finite"):
        km.assign(torch.tensor([[float("nan")], [float("inf")]]))
    with pytest.raises(ValueError, match="centroids' device"):
        km.assign(torch.zeros(2, 1, device="meta"))


def test_k_means_refuses_points_whose_squared_distances_overflow():
    huge = torch.tensor([[1e20], [2e20], [-1e20], [-2e20]])
    with pytest.raises(ValueError, match="squared distances overflow torch.float32"):
        k_means(huge, 2)
    result = k_means(huge.double(), 2, generator=torch.Generator().manual_seed(0))  # the way out
    assert sorted(result.centroids.flatten().tolist()) == pytest.approx([-1.5e20, 1.5e20], rel=1e-6)  # (float32 input)


@pytest.mark.parametrize("call", [
    lambda: k_means(torch.randn(5, 2), 2, generator=0),
    lambda: s4.mask_items(torch.tensor([[1, 2]]), num_items=3, generator=0),
    lambda: s4.crop_items(torch.tensor([[1, 2]]), generator="g"),
    lambda: s4.reorder_items(torch.tensor([[1, 2]]), generator=1.0),
    lambda: s4.insert_items(torch.tensor([[1, 2]]), num_items=3, generator=[]),
    lambda: SequenceAugmenter(5)(torch.tensor([[1, 2]]), generator="x"),
])
def test_a_generator_that_is_not_one_is_named(call):
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
        call()


def test_kmeans_seed_has_the_generators_range():
    KMeans(2, seed=2**64 - 1).fit(torch.randn(6, 2))
    with pytest.raises(ValueError, match="seed must be <= 18446744073709551615"):
        KMeans(2, seed=2**64)


# ------------------------------------------------------------------ float32 range
def _bounded(*shape: int) -> torch.Tensor:
    """Entries in [-0.5, 0.5): logits differ by at most 1, so every loss below stays within
    float32 at the smallest divisor (about 8.5e37 a row), while a sum of four rows would not."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape))) - 0.5


@pytest.mark.parametrize("call, name", [
    (lambda t: sinkhorn_knopp(torch.eye(2), epsilon=t), "epsilon"),
    (lambda t: intent_info_nce(torch.eye(2), torch.eye(2), temperature=t), "temperature"),
    (lambda t: online_clustering(_bounded(4, 3), _bounded(2, 3), temperature=t).loss, "temperature"),
    (lambda t: online_clustering(_bounded(4, 3), _bounded(2, 3), epsilon=t).loss, "epsilon"),
    (lambda t: prototype_distillation(_bounded(4, 3), _bounded(2, 3), torch.tensor([0, 1, 0, 1]),
                                      temperature=t), "temperature"),
])
def test_a_divisor_too_small_for_float32_is_refused_and_the_smallest_accepted_is_finite(call, name):
    """Inputs from a fixed generator: the test no longer depends on the global RNG's state (an
    unbounded ``randn`` student gives a KL beyond float32 at this temperature, a true inf)."""
    for tiny in (1e-39, 1e-300):
        with pytest.raises(ValueError, match=f"{name} must be >= "):
            call(tiny)
    assert torch.isfinite(call(MIN_DIVISOR)).all()


def test_the_losses_mean_is_finite_where_each_row_is():
    """Eight rows of about 8.5e37 each at the smallest temperature: their float32 sum overflows,
    their mean does not; each loss scales before it sums (review of 2026-12-06)."""
    z = torch.tensor([[0.5, -0.5]]).expand(8, 2)
    mu = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])
    distill = prototype_distillation(z, mu, torch.ones(8, dtype=torch.long), temperature=MIN_DIVISOR,
                                     reduction="none")
    assert torch.isfinite(distill).all() and not torch.isfinite(distill.sum())
    mean = prototype_distillation(z, mu, torch.ones(8, dtype=torch.long), temperature=MIN_DIVISOR)
    assert mean.item() == pytest.approx(distill.double().mean().item(), rel=1e-6)
    clustered = online_clustering(z, mu, temperature=MIN_DIVISOR)  # balanced targets: half on -z
    assert torch.isfinite(clustered.loss) and clustered.loss.item() > 1e37


def test_sinkhorn_refuses_scores_whose_ratio_to_epsilon_overflows():
    with pytest.raises(ValueError, match="scores / epsilon must stay below"):
        sinkhorn_knopp(torch.tensor([[3e38, -3e38], [0.0, 1.0]]))
    q = sinkhorn_knopp(torch.tensor([[1e36, -1e36], [0.0, 1.0]]))  # within range: finite, rows sum to 1
    assert torch.isfinite(q).all() and torch.allclose(q.sum(1), torch.ones(2))


def test_a_reversal_scale_beyond_the_buffer_is_refused():
    for make in (lambda: GradientReversal(scale=1e300), lambda: HeadTailAdversary(3, scale=1e300),
                 lambda: GradientReversal().set_scale(1e300),
                 lambda: GradientReversal(scale=torch.tensor(1e300, dtype=torch.float64))):
        with pytest.raises(ValueError, match="scale must fit the module's torch.float32 buffer"):
            make()
    grl = GradientReversal().double()
    grl.set_scale(1e300)  # a float64 buffer holds it
    assert float(grl.scale) == 1e300


@pytest.mark.parametrize("call", [
    lambda: sinkhorn_knopp(torch.eye(2), epsilon=10**400),
    lambda: s4.grad_reverse(torch.ones(1), scale=10**400),
    lambda: GradientReversal(scale=-(10**400)),
])
def test_an_int_beyond_float_range_is_a_value_error(call):
    with pytest.raises(ValueError, match="too large for a float"):
        call()


@pytest.mark.parametrize("classes", [0, 1])
def test_an_adversary_weight_with_fewer_than_two_classes_is_named(classes):
    """One class: the softmax is 1 whatever z is, so the loss and its gradient are always 0."""
    with pytest.raises(ValueError, match=r"weight must have at least 2 class rows .*got shape \(%d, 4\)" % classes):
        head_tail_adversarial_loss(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), torch.randn(classes, 4))


# ------------------------------------------------------------------ cut-offs
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.integers(41, 2**63 - 1))
def test_any_cutoff_beyond_every_rank_gives_the_same_metrics_fast(ranks, huge):
    ranks = torch.tensor(ranks)
    start = time.perf_counter()
    metrics = ranking_metrics(ranks, ks=(huge,))
    assert time.perf_counter() - start < 1.0  # no bins for ranks that cannot occur
    assert metrics == {"HR@" + str(huge): 1.0, "NDCG@" + str(huge): ranking_metrics(ranks, ks=(41,))["NDCG@41"]}


def test_evaluate_ranking_with_a_huge_cutoff():
    table = torch.eye(4)
    result = evaluate_ranking(lambda x: table[x[:, -1]], torch.tensor([[1, 2], [2, 3]]), torch.tensor([2, 1]),
                              ks=(1, 10**12))
    assert result.metrics["HR@1000000000000"] == 1.0
    assert result.metrics["NDCG@1000000000000"] == ranking_metrics(result.ranks, ks=(4,))["NDCG@4"]


# ------------------------------------------------------------------ meta tensors
META_CALLS = {
    "sinkhorn_knopp": (lambda z: sinkhorn_knopp(z[:, :3]), (4, 3)),
    "intent_info_nce": (lambda z: intent_info_nce(z, z, torch.randn(3, 8, device="meta"),
                                                  torch.zeros(4, dtype=torch.long, device="meta")), ()),
    "prototype_distillation": (lambda z: prototype_distillation(z, torch.randn(3, 8, device="meta"),
                                                                torch.zeros(4, dtype=torch.long, device="meta")), ()),
    "OnlineIntentClustering": (lambda z: s4.OnlineIntentClustering(8, 3).to("meta")(z).loss, ()),
    "HeadTailAdversary": (lambda z: HeadTailAdversary(8).to("meta")(z, torch.zeros(4, dtype=torch.long,
                                                                                   device="meta")).loss, ()),
    "GradientReversal": (lambda z: GradientReversal().to("meta")(z), (4, 8)),
    "SequenceAugmenter": (lambda z: SequenceAugmenter(9)(torch.ones(4, 5, dtype=torch.long, device="meta")), (4, 5)),
    "SASRecEncoder.represent": (lambda z: SASRecEncoder(9, hidden_size=8, max_len=5).to("meta").represent(
        torch.ones(4, 5, dtype=torch.long, device="meta")), (4, 8)),
    "linear_cross_entropy": (lambda z: linear_cross_entropy(z, torch.randn(10, 8, device="meta"),
                                                            torch.ones(4, dtype=torch.long, device="meta")), ()),
}


@pytest.mark.parametrize("name", sorted(META_CALLS))
def test_shape_only_tensors_pass_the_value_checks(name):
    call, shape = META_CALLS[name]
    out = call(torch.randn(4, 8, device="meta"))
    assert out.device.type == "meta" and tuple(out.shape) == shape
