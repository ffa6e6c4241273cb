"""Laws of ``SequenceAugmenter`` and the per-operation functions (S4Rec Eq. 2-5).

Every output row is checked against the law of the operation it drew; exact distributions
are enumerated with itertools; the functions and the module agree; with validation off no
value is read back from the device. The speed comparison against per-row loops lives in
``benchmarks/bench_augment.py``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given, settings
from test_contrastive import count_host_reads

from s4rec_components import SequenceAugmenter, set_validate_args
from s4rec_components.augment import crop_items, insert_items, mask_items, reorder_items

OPS = ("mask", "crop", "reorder", "insert")
POOL_SIZE = 5  # pool ids sit above the input ids, so inserted items are recognisable
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ratios = st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0])
# Seeds of the torch generator handed to the code under test (its own randomness).
seeds = st.integers(min_value=0, max_value=2**31 - 1)


# ----------------------------------------------------------------------------- strategies


@st.composite
def left_padded(
    draw: Any, max_batch: int = 12, max_len: int = 10, max_items: int = 30
) -> tuple[torch.Tensor, int]:
    """``(ids, m)``: a ``(b, l)`` long batch of ids in ``1..m``, left-padded with 0.

    Hypothesis draws every length (0 included: rows of padding only) and every id, so a
    failure shrinks to short rows of small ids.
    """
    b, l = draw(st.integers(1, max_batch)), draw(st.integers(1, max_len))
    m = draw(st.integers(1, max_items))
    rows = []
    for length in draw(st.lists(st.integers(0, l), min_size=b, max_size=b)):
        items = draw(st.lists(st.integers(1, m), min_size=length, max_size=length))
        rows.append([0] * (l - length) + items)
    return torch.tensor(rows, dtype=torch.long), m


@st.composite
def augment_batches(draw: Any) -> tuple[torch.Tensor, int, torch.Tensor]:
    """``(ids, num_items, pool)``: left-padded ids in ``1..m`` and a pool of ``POOL_SIZE`` ids
    ``m + 1 .. num_items`` disjoint from the input ids."""
    ids, m = draw(left_padded())
    pool = torch.arange(m + 1, m + 1 + POOL_SIZE)
    return ids, m + POOL_SIZE, pool


# ----------------------------------------------------------------------------- laws per row


def real_items(row: list[int]) -> list[int]:
    """The items of a left-padded row (everything from the first non-zero id on)."""
    for i, x in enumerate(row):
        if x != 0:
            return row[i:]
    return []


def assert_left_padded(out: torch.Tensor) -> None:
    for row in out.tolist():
        items = real_items(row)
        assert all(x != 0 for x in items), row


# ----------------------------------------------------------------------------- laws per row


def check_mask(inp: list[int], out: list[int], ratio: float, mask_id: int) -> None:
    l, n = len(inp), len(real_items(inp))
    assert out[: l - n] == [0] * (l - n)
    changed = [(a, b) for a, b in zip(inp[l - n :], out[l - n :]) if a != b]
    assert all(b == mask_id for _, b in changed)
    assert sum(b == mask_id for b in out[l - n :]) == int(ratio * n)


def check_crop(inp: list[int], out: list[int], ratio: float) -> None:
    items, kept = real_items(inp), real_items(out)
    w = max(int(ratio * len(items)), 1)
    assert len(kept) == w
    assert any(items[s : s + w] == kept for s in range(len(items) - w + 1))


def check_reorder(inp: list[int], out: list[int], ratio: float) -> None:
    l, items = len(inp), real_items(inp)
    n = len(items)
    assert out[: l - n] == [0] * (l - n)
    assert sorted(out[l - n :]) == sorted(items)
    moved = [j for j in range(n) if out[l - n + j] != items[j]]
    if moved:
        assert moved[-1] - moved[0] + 1 <= int(ratio * n)


def check_insert(inp: list[int], out: list[int], ratio: float, pool: set[int]) -> None:
    l, items, kept = len(inp), real_items(inp), real_items(out)
    n = len(items)
    k = max(int(ratio * n), 1)
    assert len(kept) == min(n + k, l)
    is_new = [x in pool for x in kept]
    originals = [x for x, new in zip(kept, is_new) if not new]
    t = len(originals)
    # The kept originals are the last t originals, in order; every insertion sits right
    # before an original (none last, none adjacent); at most k insertions survive, all of
    # them when nothing is truncated.
    assert originals == items[n - t :]
    assert len(kept) - t <= k
    assert not is_new[-1]
    assert not any(a and b for a, b in zip(is_new, is_new[1:]))
    if n + k <= l:
        assert t == n and len(kept) - t == k


def check_row(
    op: str, inp: list[int], out: list[int], aug: SequenceAugmenter, pool: torch.Tensor
) -> None:
    if not real_items(inp):
        assert out == inp
    elif op == "mask":
        check_mask(inp, out, aug.mask_ratio, aug.mask_id)
    elif op == "crop":
        check_crop(inp, out, aug.crop_ratio)
    elif op == "reorder":
        check_reorder(inp, out, aug.reorder_ratio)
    else:
        check_insert(inp, out, aug.insert_ratio, set(pool.tolist()))


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("device", DEVICES)
@given(batch=augment_batches(), ratios_=st.tuples(ratios, ratios, ratios, ratios), seed=seeds)
def test_each_row_obeys_the_law_of_its_operation(
    device: str, batch: tuple[torch.Tensor, int, torch.Tensor],
    ratios_: tuple[float, float, float, float], seed: int,
) -> None:
    ids, num_items, pool = batch
    ids, pool = ids.to(device), pool.to(device)
    mask_r, crop_r, reorder_r, insert_r = ratios_
    aug = SequenceAugmenter(
        num_items, mask_ratio=mask_r, crop_ratio=crop_r, reorder_ratio=reorder_r,
        insert_ratio=insert_r, insert_pool=pool,
    ).to(device)
    before = ids.clone()
    g = torch.Generator(device=device).manual_seed(seed)
    out, ops = aug.with_operations(ids, generator=g)
    assert torch.equal(ids, before)  # input untouched
    assert out.dtype == torch.long and out.shape == ids.shape and out.device == ids.device
    assert ops.shape == (ids.shape[0],) and ops.dtype == torch.long
    assert_left_padded(out)
    for inp_row, out_row, op in zip(ids.tolist(), out.tolist(), ops.tolist()):
        check_row(OPS[op], inp_row, out_row, aug, pool)
        if real_items(inp_row):  # a row with items (length 1 included) keeps at least one
            assert real_items(out_row)
        else:
            assert out_row == [0] * len(out_row)


@pytest.mark.parametrize("op", OPS)
@given(batch=augment_batches(), ratio=ratios, seed=seeds)
@settings(max_examples=25)
def test_single_operation_laws(
    op: str, batch: tuple[torch.Tensor, int, torch.Tensor], ratio: float, seed: int
) -> None:
    ids, num_items, pool = batch
    kwargs: dict[str, Any] = {f"{op}_ratio": ratio}
    aug = SequenceAugmenter(num_items, operations=(op,),  # type: ignore[arg-type]
                            insert_pool=pool, **kwargs)
    out, ops = aug.with_operations(ids, generator=torch.Generator().manual_seed(seed))
    assert bool((ops == 0).all())
    for inp_row, out_row in zip(ids.tolist(), out.tolist()):
        check_row(op, inp_row, out_row, aug, pool)


@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=25)
def test_iclrec_views(batch: tuple[torch.Tensor, int, torch.Tensor], seed: int) -> None:
    """ICLRec's recipe: crop / mask-to-padding / reorder, one per row, uniformly."""
    ids, num_items, pool = batch
    aug = SequenceAugmenter(num_items, operations=("crop", "mask", "reorder"), mask_id=0)
    out, ops = aug.with_operations(ids, generator=torch.Generator().manual_seed(seed))
    for inp_row, out_row, op in zip(ids.tolist(), out.tolist(), ops.tolist()):
        name = aug.operations[op]
        if name == "mask":
            check_mask_to_zero(inp_row, out_row, aug.mask_ratio)
        else:
            check_row(name, inp_row, out_row, aug, pool)


def check_mask_to_zero(inp_row: list[int], out_row: list[int], ratio: float) -> None:
    l, n = len(inp_row), len(real_items(inp_row))
    assert out_row[: l - n] == [0] * (l - n)
    tail = list(zip(inp_row[l - n :], out_row[l - n :]))
    assert all(b in (a, 0) for a, b in tail)  # kept in place, never re-aligned
    assert sum(b == 0 for _, b in tail) == int(ratio * n)


@given(batch=augment_batches(), ratio=ratios, seed=seeds)
@settings(max_examples=25)
def test_mask_with_zero_writes_zeros_in_place(
    batch: tuple[torch.Tensor, int, torch.Tensor], ratio: float, seed: int
) -> None:
    ids, num_items, _ = batch
    aug = SequenceAugmenter(num_items, operations=("mask",), mask_ratio=ratio, mask_id=0)
    out = aug(ids, generator=torch.Generator().manual_seed(seed))
    for inp_row, out_row in zip(ids.tolist(), out.tolist()):
        check_mask_to_zero(inp_row, out_row, ratio)


@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=20)
def test_default_insert_pool_is_all_items(
    batch: tuple[torch.Tensor, int, torch.Tensor], seed: int
) -> None:
    ids, num_items, _ = batch
    aug = SequenceAugmenter(num_items, operations=("insert",), insert_ratio=1.0)
    out = aug(ids, generator=torch.Generator().manual_seed(seed))
    assert int(out.min()) >= 0 and int(out.max()) <= num_items
    for inp_row, out_row in zip(ids.tolist(), out.tolist()):
        n = len(real_items(inp_row))
        assert len(real_items(out_row)) == min(2 * n, len(inp_row))


@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=20)
def test_seeded_runs_repeat(batch: tuple[torch.Tensor, int, torch.Tensor], seed: int) -> None:
    ids, num_items, pool = batch
    aug = SequenceAugmenter(num_items, insert_pool=pool, reorder_ratio=0.6)
    first = aug.with_operations(ids, generator=torch.Generator().manual_seed(seed))
    again = aug.with_operations(ids, generator=torch.Generator().manual_seed(seed))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert torch.equal(aug(ids, generator=torch.Generator().manual_seed(seed)), first[0])
    torch.manual_seed(seed)
    global_first = aug(ids)
    torch.manual_seed(seed)
    assert torch.equal(aug(ids), global_first)


@pytest.mark.parametrize("op", OPS)
@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=10)
def test_functions_match_single_operation_module(
    op: str, batch: tuple[torch.Tensor, int, torch.Tensor], seed: int
) -> None:
    ids, num_items, pool = batch
    aug = SequenceAugmenter(num_items, operations=(op,),  # type: ignore[arg-type]
                            insert_pool=pool, reorder_ratio=0.5)
    expected = aug(ids, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    if op == "mask":
        got = mask_items(ids, num_items=num_items, ratio=0.7, generator=g)
    elif op == "crop":
        got = crop_items(ids, ratio=0.2, generator=g)
    elif op == "reorder":
        got = reorder_items(ids, ratio=0.5, generator=g)
    else:
        got = insert_items(ids, num_items=num_items, ratio=0.4, insert_pool=pool, generator=g)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=15)
def test_other_integer_dtypes_give_the_values_of_long_ids(
    dtype: torch.dtype, batch: tuple[torch.Tensor, int, torch.Tensor], seed: int
) -> None:
    # int32 ids come back int32 and every other integer dtype long (the encoder's rule), with
    # the values long ids give under the same generator state
    ids, num_items, pool = batch
    assume(num_items + 1 <= torch.iinfo(dtype).max)
    narrow = ids.to(dtype)
    expected_dtype = torch.int32 if dtype == torch.int32 else torch.long
    aug = SequenceAugmenter(num_items, insert_pool=pool, reorder_ratio=0.6)
    expected = aug.with_operations(ids, generator=torch.Generator().manual_seed(seed))
    got = aug.with_operations(narrow, generator=torch.Generator().manual_seed(seed))
    assert got[0].dtype == expected_dtype and got[1].dtype == torch.long
    assert torch.equal(got[0].long(), expected[0]) and torch.equal(got[1], expected[1])
    calls = (
        lambda x, g: mask_items(x, num_items=num_items, generator=g),
        lambda x, g: crop_items(x, generator=g),
        lambda x, g: reorder_items(x, ratio=0.6, generator=g),
        lambda x, g: insert_items(x, num_items=num_items, insert_pool=pool, generator=g),
    )
    for call in calls:
        want = call(ids, torch.Generator().manual_seed(seed))
        have = call(narrow, torch.Generator().manual_seed(seed))
        assert have.dtype == expected_dtype and torch.equal(have.long(), want)
    assert torch.equal(narrow, ids.to(dtype))  # the input is not modified


def test_int32_ids_refused_only_when_a_written_id_overflows() -> None:
    ids = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    top = 2**31 - 1
    for call in (
        lambda: mask_items(ids, num_items=top),  # mask id 2**31
        lambda: insert_items(ids, num_items=top + 1),
        lambda: SequenceAugmenter(top)(ids),
        lambda: SequenceAugmenter(5, operations=("mask",), mask_id=top + 1).with_operations(ids),
    ):
        with pytest.raises(ValueError, match="int32 but this call may write id 2147483648"):
            call()
    assert mask_items(ids, num_items=top - 1, ratio=1.0).tolist() == [[0, top, top]]
    assert mask_items(ids, num_items=top - 1, ratio=1.0).dtype == torch.int32
    # Operations that write no new id take int32 ids whatever num_items is.
    for aug in (
        SequenceAugmenter(2**40, operations=("crop", "reorder")),
        SequenceAugmenter(2**40, operations=("crop", "mask", "reorder"), mask_id=0),
    ):
        assert aug(ids).dtype == torch.int32
    assert crop_items(ids).dtype == reorder_items(ids).dtype == torch.int32
    assert mask_items(ids.long(), num_items=top).dtype == torch.long


@given(batch=left_padded(max_items=5), extra=st.integers(1, 1000), seed=seeds)
@settings(max_examples=20)
def test_mask_id_comes_from_num_items_not_the_batch(
    batch: tuple[torch.Tensor, int], extra: int, seed: int
) -> None:
    """Issue 12's bug: the default mask id was the batch's largest id + 1, a real item."""
    ids, m = batch
    num_items = m + extra
    out = mask_items(ids, num_items=num_items, ratio=1.0,
                     generator=torch.Generator().manual_seed(seed))
    for inp_row, out_row in zip(ids.tolist(), out.tolist()):
        n = len(real_items(inp_row))
        assert out_row[len(out_row) - n :] == [num_items + 1] * n
    # inserted ids may be any of 1..num_items, above the batch's largest id
    big = insert_items(ids, num_items=10**6, ratio=1.0,
                       generator=torch.Generator().manual_seed(seed))
    assert int(big.max()) <= 10**6
    lengths = (ids > 0).sum(dim=1)
    surviving = int(lengths[2 * lengths <= ids.shape[1]].sum())  # rows keeping all insertions
    if surviving >= 4:
        assert int(big.max()) > m  # 4+ draws from 1..10**6 all <= 5: probability < 1e-20


def test_all_padding_and_empty_batches() -> None:
    aug = SequenceAugmenter(5)
    zeros = torch.zeros(64, 7, dtype=torch.long)
    assert torch.equal(aug(zeros, generator=torch.Generator().manual_seed(1)), zeros)
    empty = torch.zeros(0, 4, dtype=torch.long)
    out, ops = aug.with_operations(empty)
    assert out.shape == (0, 4) and ops.shape == (0,)
    assert isinstance(aug(empty), torch.Tensor)


def test_input_may_hold_the_mask_id() -> None:
    aug = SequenceAugmenter(3, mask_id=10)
    ids = torch.tensor([[0, 10, 2, 3]])
    assert aug(ids, generator=torch.Generator().manual_seed(0)).shape == (1, 4)


# ----------------------------------------------------------------------------- host reads


def test_no_host_reads_with_validation_off() -> None:
    ids = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 1, 2, 3], [0, 0, 0, 0, 6]])
    pool = torch.tensor([2, 3])
    aug = SequenceAugmenter(6, insert_pool=pool)
    single = SequenceAugmenter(6, operations=("insert",))
    with count_host_reads() as on:
        aug(ids)
    assert on, "the counter must see the range and padding checks"
    set_validate_args(False)
    try:
        with count_host_reads() as off:
            aug(ids)
            aug.with_operations(ids[:1])
            single(ids)
            mask_items(ids, num_items=6)
            crop_items(ids)
            reorder_items(ids)
            insert_items(ids, num_items=6, insert_pool=pool)
    finally:
        set_validate_args(True)
    assert off == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_synchronisation_on_cuda_with_validation_off() -> None:
    ids = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 1, 2, 3], [0, 0, 0, 0, 6]], device="cuda")
    pool = torch.tensor([2, 3], device="cuda")
    aug = SequenceAugmenter(6, insert_pool=pool).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    set_validate_args(False)
    torch.cuda.set_sync_debug_mode("error")
    try:
        aug(ids, generator=g)
        aug.with_operations(ids, generator=g)
        mask_items(ids, num_items=6, generator=g)
        insert_items(ids, num_items=6, insert_pool=pool, generator=g)
        crop_items(ids, generator=g)
        reorder_items(ids, generator=g)
    finally:
        torch.cuda.set_sync_debug_mode(0)
        set_validate_args(True)


def test_value_checks_follow_the_switch() -> None:
    right_padded = torch.tensor([[1, 2, 0]])
    with pytest.raises(ValueError, match="row 0"):
        SequenceAugmenter(5)(right_padded)
    set_validate_args(False)
    try:
        SequenceAugmenter(5)(right_padded)  # trusted: no check, no error
        SequenceAugmenter(5, insert_pool=torch.tensor([9]))
    finally:
        set_validate_args(True)


# ----------------------------------------------------------------------------- distributions

ROW = [0, 0, 1, 2, 3, 4, 5]  # n = 5, l = 7
DRAWS = 8000
MAX_TOTAL_VARIATION = 0.1  # sampling noise here is about 0.03


def exact_distribution(
    op: str, ratio: float, pool: list[int], length: int
) -> dict[tuple[int, ...], float]:
    """Enumerate every outcome of ``op`` on ``ROW`` with its probability (the paper's recipe)."""
    items = real_items(ROW)
    n = len(items)
    dist: Counter[tuple[int, ...]] = Counter()

    def pad(seq: list[int]) -> tuple[int, ...]:
        seq = seq[-length:]
        return tuple([0] * (length - len(seq)) + seq)

    if op == "mask":
        subsets = list(itertools.combinations(range(n), int(ratio * n)))
        for chosen in subsets:
            dist[pad([99 if j in chosen else x for j, x in enumerate(items)])] += 1 / len(subsets)
    elif op == "crop":
        w = max(int(ratio * n), 1)
        for s in range(n - w + 1):
            dist[pad(items[s : s + w])] += 1 / (n - w + 1)
    elif op == "reorder":
        w = int(ratio * n)
        perms = list(itertools.permutations(range(w)))
        for s in range(n - w + 1):
            for perm in perms:
                window = [items[s + p] for p in perm]
                dist[pad(items[:s] + window + items[s + w :])] += 1 / ((n - w + 1) * len(perms))
    else:
        k = max(int(ratio * n), 1)
        subsets = list(itertools.combinations(range(n), k))
        fills = list(itertools.product(pool, repeat=k))
        for chosen in subsets:
            for fill in fills:
                new, seq = iter(fill), []
                for j, x in enumerate(items):
                    if j in chosen:
                        seq.append(next(new))
                    seq.append(x)
                dist[pad(seq)] += 1 / (len(subsets) * len(fills))
    return dist


@pytest.mark.slow
@pytest.mark.parametrize(
    ("op", "ratio", "length"),
    [("mask", 0.4, 7), ("crop", 0.4, 7), ("crop", 0.1, 7), ("reorder", 0.6, 7),
     ("insert", 0.4, 7), ("insert", 0.4, 6)],
)
def test_outcomes_follow_the_exact_distribution(op: str, ratio: float, length: int) -> None:
    pool = [8, 9]
    aug = SequenceAugmenter(
        9, operations=(op,), mask_id=99 if op == "mask" else None,  # type: ignore[arg-type]
        insert_pool=torch.tensor(pool), **{f"{op}_ratio": ratio},
    )
    ids = torch.tensor([ROW[-length:]]).expand(DRAWS, length)
    out = aug(ids, generator=torch.Generator().manual_seed(123))
    exact = exact_distribution(op, ratio, pool, length)
    seen = Counter(map(tuple, out.tolist()))
    assert set(seen) <= set(exact)  # nothing outside the support
    outcomes = set(seen) | set(exact)
    tv = 0.5 * sum(abs(seen[o] / DRAWS - exact.get(o, 0.0)) for o in outcomes)
    assert tv < MAX_TOTAL_VARIATION


def test_operation_frequencies_follow_probs() -> None:
    probs = (0.1, 0.2, 0.3, 0.4)
    aug = SequenceAugmenter(3, operation_probs=probs)
    ids = torch.ones(20000, 1, dtype=torch.long)
    _, ops = aug.with_operations(ids, generator=torch.Generator().manual_seed(7))
    freq = torch.bincount(ops, minlength=4).double() / ops.numel()
    # standard error is below 0.004; the bound is 8 of them
    assert torch.allclose(freq, torch.tensor(probs, dtype=torch.float64), atol=0.03)
    uniform = SequenceAugmenter(3, operations=("crop", "mask"))
    _, ops = uniform.with_operations(ids, generator=torch.Generator().manual_seed(8))
    assert abs(ops.double().mean().item() - 0.5) < 0.03


@pytest.mark.parametrize("probs", [(0.0, 1.0), (1.0, 0.0), (0.3, 0.7, 0.0), (0.0, 0.5, 0.0, 0.5)])
def test_zero_probability_operation_never_drawn(probs: tuple[float, ...]) -> None:
    aug = SequenceAugmenter(3, operations=OPS[: len(probs)],  # type: ignore[arg-type]
                            operation_probs=probs)
    _, ops = aug.with_operations(torch.ones(4000, 2, dtype=torch.long),
                                 generator=torch.Generator().manual_seed(3))
    drawn = set(torch.unique(ops).tolist())
    assert drawn == {i for i, p in enumerate(probs) if p > 0}


def test_repeated_operation_names() -> None:
    aug = SequenceAugmenter(3, operations=("crop", "crop", "mask"), mask_id=0, mask_ratio=1.0)
    ids = torch.tensor([[1, 2, 3]]).expand(3000, 3)
    out, ops = aug.with_operations(ids, generator=torch.Generator().manual_seed(0))
    masked = (out == 0).all(dim=1)
    assert torch.equal(masked, ops == 2)
    assert abs(masked.double().mean().item() - 1 / 3) < 0.04


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("item_ids", "error", "match"),
    [
        ([[0, 1]], TypeError, "torch.Tensor"),
        (torch.tensor([[0.0, 1.0]]), TypeError, "integer"),
        (torch.tensor([[0, 1]], dtype=torch.bool), TypeError, "integer"),
        (torch.tensor([0, 1]), ValueError, r"\(b, l\)"),
        (torch.zeros(2, 0, dtype=torch.long), ValueError, "l >= 1"),
        (torch.tensor([[0, 7]]), ValueError, r"\[0, 6\]"),
        (torch.tensor([[-1, 2]]), ValueError, r"\[0, 6\]"),
        (torch.tensor([[0, 1, 2], [1, 0, 2]]), ValueError, "row 1"),
        (torch.tensor([[3, 4, 0]]), ValueError, "row 0"),
    ],
)
def test_bad_item_ids(item_ids: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SequenceAugmenter(5)(item_ids)
    with pytest.raises(error, match=match):
        SequenceAugmenter(5).with_operations(item_ids)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_items": 0}, ValueError, "num_items must be >= 1"),
        ({"num_items": 2.5}, TypeError, "num_items must be an int"),
        ({"num_items": True}, TypeError, "num_items must be an int"),
        ({"operations": ()}, ValueError, "operations must not be empty"),
        ({"operations": ("mask", "drop")}, ValueError, "'drop'"),
        ({"operations": "mask"}, TypeError, "sequence of names"),
        ({"operations": None}, TypeError, "operations must be a sequence of names .* got NoneType"),
        ({"operations": 3}, TypeError, "operations must be a sequence of names .* got int"),
        ({"operations": b"mask"}, TypeError, "operations must be a sequence of names"),
        ({"mask_ratio": -0.1}, ValueError, r"mask_ratio must lie in \[0, 1\]"),
        ({"crop_ratio": 1.5}, ValueError, "crop_ratio"),
        ({"reorder_ratio": float("nan")}, ValueError, "reorder_ratio must be finite"),
        ({"insert_ratio": float("inf")}, ValueError, "insert_ratio must be finite"),
        ({"insert_ratio": True}, TypeError, "insert_ratio must be a real number"),
        ({"crop_ratio": "0.2"}, TypeError, "crop_ratio must be a real number"),
        ({"mask_id": 3}, ValueError, "mask_id"),
        ({"mask_id": 6.0}, TypeError, "mask_id must be an int"),
        ({"mask_id": False}, TypeError, "mask_id must be an int"),
        ({"mask_id": -1}, ValueError, "mask_id must be >= 0"),
        ({"insert_pool": torch.tensor([[1, 2]])}, ValueError, "insert_pool"),
        ({"insert_pool": torch.tensor([], dtype=torch.long)}, ValueError, "insert_pool"),
        ({"insert_pool": torch.tensor([0, 1])}, ValueError, r"insert_pool must lie in \[1, 5\]"),
        ({"insert_pool": torch.tensor([1, 6])}, ValueError, r"insert_pool must lie in \[1, 5\]"),
        ({"insert_pool": torch.tensor([1.0])}, TypeError, "insert_pool"),
        ({"insert_pool": [1, 2]}, TypeError, "insert_pool"),
        ({"operation_probs": (0.5, 0.5)}, ValueError, "one entry per operation"),
        ({"operation_probs": (0.5, 0.5, 0.5, 0.5)}, ValueError, "sum to 1"),
        ({"operation_probs": (1.5, -0.5, 0.0, 0.0)}, ValueError, r"operation_probs\[1\]"),
        ({"operation_probs": (float("nan"), 1.0, 0.0, 0.0)}, ValueError, "must be finite"),
        ({"operation_probs": ("a", 1.0, 0.0, 0.0)}, TypeError, "must be a real number"),
        ({"operation_probs": "abcd"}, TypeError, "operation_probs must be a sequence"),
    ],
)
def test_bad_constructor_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    kwargs = {"num_items": 5, **kwargs}
    with pytest.raises(error, match=match):
        SequenceAugmenter(**kwargs)


def test_bad_function_arguments() -> None:
    ids = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="ratio"):
        crop_items(ids, ratio=1.2)
    with pytest.raises(ValueError, match="ratio"):
        reorder_items(ids, ratio=-0.2)
    with pytest.raises(TypeError, match="ratio must be a real number"):
        reorder_items(ids, ratio=True)
    with pytest.raises(ValueError, match="mask_id"):
        mask_items(ids, num_items=2, ratio=0.5, mask_id=1)
    with pytest.raises(ValueError, match="insert_pool"):
        insert_items(ids, num_items=2, ratio=0.5, insert_pool=torch.tensor([3]))
    with pytest.raises(ValueError, match="row 0"):
        crop_items(torch.tensor([[1, 0, 2]]))
    with pytest.raises(ValueError, match=r"item_ids must lie in \[0, 3\]"):
        mask_items(torch.tensor([[0, 4]]), num_items=2)
    with pytest.raises(TypeError, match="num_items must be an int"):
        insert_items(ids, num_items=True)


def test_num_items_is_required_and_hyperparameters_keyword_only() -> None:
    ids = torch.tensor([[0, 1, 2]])
    with pytest.raises(TypeError, match="num_items"):
        mask_items(ids)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="num_items"):
        insert_items(ids)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):  # num_items given: only the ratio is wrong
        mask_items(ids, 0.5, num_items=5)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        crop_items(ids, 0.5)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        SequenceAugmenter(5, ("mask",))  # type: ignore[misc]


def test_num_items_beyond_int64_is_refused() -> None:
    # G-5: the mask id num_items + 1 (and insert's randint bound) must fit in int64
    ids = torch.tensor([[0, 1, 2]])
    for num_items in (2**63 - 1, 2**63, 10**30):
        for call in (
            lambda: mask_items(ids, num_items=num_items),
            lambda: insert_items(ids, num_items=num_items),
            lambda: SequenceAugmenter(num_items),
        ):
            with pytest.raises(ValueError, match=r"num_items must be <= 2\*\*63 - 2"):
                call()
    with pytest.raises(ValueError, match="mask_id must be <="):
        mask_items(ids, num_items=3, mask_id=2**63)
    largest = 2**63 - 2
    assert mask_items(ids, num_items=largest, ratio=1.0).tolist() == [[0, largest + 1, largest + 1]]
    out = insert_items(ids, num_items=largest, ratio=1.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == ids.shape and bool((out >= 0).all())
    assert SequenceAugmenter(largest, operations=("mask",), mask_ratio=1.0)(ids).tolist() == [
        [0, largest + 1, largest + 1]
    ]
