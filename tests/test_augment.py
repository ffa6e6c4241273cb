"""Laws of ``SequenceAugmenter`` and the per-operation functions (S4Rec Eq. 2-5).

The slow reference below is a per-sample Python loop transcribed from the CL4SRec / CoSeRec
recipes; it serves the speed comparison. Exact distributions are enumerated with itertools.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from strategies import left_padded_sequences, seeds

from s4rec_components import SequenceAugmenter
from s4rec_components.augment import crop_items, insert_items, mask_items, reorder_items

OPS = ("mask", "crop", "reorder", "insert")
POOL_SIZE = 5  # pool ids sit above the input ids, so inserted items are recognisable
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ratios = st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0])


# ----------------------------------------------------------------------------- strategies


@st.composite
def augment_batches(draw):
    """``(ids, num_items, pool)``: left-padded ids in ``1..m``, some rows all padding, and a
    pool of ``POOL_SIZE`` ids ``m + 1 .. num_items`` disjoint from the input ids."""
    ids, m = draw(left_padded_sequences())
    empty = draw(st.lists(st.booleans(), min_size=ids.shape[0], max_size=ids.shape[0]))
    ids[torch.tensor(empty)] = 0
    pool = torch.arange(m + 1, m + 1 + POOL_SIZE)
    return ids, m + POOL_SIZE, pool


# ----------------------------------------------------------------------------- references


def reference_augment(item_ids: torch.Tensor, aug: SequenceAugmenter, generator: torch.Generator):
    """Straightforward per-sample loop: one operation per row, list-like slicing per row."""
    b, l = item_ids.shape
    out = torch.zeros_like(item_ids)
    weights = aug.operation_weights
    ops = torch.empty(b, dtype=torch.long)
    for r in range(b):
        row = item_ids[r]
        seq = row[row != 0]
        n = seq.numel()
        op_index = int(torch.multinomial(weights, 1, generator=generator))
        ops[r] = op_index
        op = aug.operations[op_index]
        if n == 0:
            continue
        if op == "mask":
            seq = seq.clone()
            seq[torch.randperm(n, generator=generator)[: int(aug.mask_ratio * n)]] = aug.mask_id
        elif op == "crop":
            w = max(int(aug.crop_ratio * n), 1)
            s = int(torch.randint(0, n - w + 1, (1,), generator=generator))
            seq = seq[s : s + w]
        elif op == "reorder":
            w = int(aug.reorder_ratio * n)
            s = int(torch.randint(0, n - w + 1, (1,), generator=generator))
            seq = seq.clone()
            seq[s : s + w] = seq[s : s + w][torch.randperm(w, generator=generator)]
        else:
            k = max(int(aug.insert_ratio * n), 1)
            before = torch.zeros(n, dtype=torch.bool)
            before[torch.randperm(n, generator=generator)[:k]] = True
            new = torch.randint(1, aug.num_items + 1, (n,), generator=generator)
            parts = []
            for j in range(n):
                if before[j]:
                    parts.append(new[j : j + 1])
                parts.append(seq[j : j + 1])
            seq = torch.cat(parts)[-l:]
        out[r, l - seq.numel() :] = seq
    return out, ops


def python_loop(rows: list[list[int]], aug: SequenceAugmenter, rng: random.Random) -> list:
    """Per-sample loop on Python lists with ``random``, as in the CL4SRec / ICLRec recipes.

    Returns the augmented rows; the drawn operation names are appended to ``python_loop.ops``.
    """
    out = []
    weights = aug.operation_weights.tolist()
    python_loop.ops = []
    for row in rows:
        seq = [x for x in row if x != 0]
        n, length = len(seq), len(row)
        op = rng.choices(aug.operations, weights=weights)[0]
        python_loop.ops.append(op)
        if n and op == "mask":
            for j in rng.sample(range(n), int(aug.mask_ratio * n)):
                seq[j] = aug.mask_id
        elif n and op == "crop":
            w = max(int(aug.crop_ratio * n), 1)
            s = rng.randint(0, n - w)
            seq = seq[s : s + w]
        elif n and op == "reorder":
            w = int(aug.reorder_ratio * n)
            s = rng.randint(0, n - w)
            window = seq[s : s + w]
            rng.shuffle(window)
            seq[s : s + w] = window
        elif n:
            chosen = set(rng.sample(range(n), max(int(aug.insert_ratio * n), 1)))
            new = []
            for j, x in enumerate(seq):
                if j in chosen:
                    new.append(rng.randint(1, aug.num_items))
                new.append(x)
            seq = new[-length:]
        out.append([0] * (length - len(seq)) + seq)
    return out


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


def check_row(op: str, inp: list[int], out: list[int], aug: SequenceAugmenter, pool) -> None:
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
def test_each_row_obeys_the_law_of_its_operation(device, batch, ratios_, seed):
    ids, num_items, pool = batch
    ids, pool = ids.to(device), pool.to(device)
    mask_r, crop_r, reorder_r, insert_r = ratios_
    aug = SequenceAugmenter(
        num_items, mask_ratio=mask_r, crop_ratio=crop_r, reorder_ratio=reorder_r,
        insert_ratio=insert_r, insert_pool=pool,
    ).to(device)
    before = ids.clone()
    g = torch.Generator(device=device).manual_seed(seed)
    out, ops = aug(ids, generator=g, return_operations=True)
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
def test_single_operation_laws(op, batch, ratio, seed):
    ids, num_items, pool = batch
    kwargs = {f"{op}_ratio": ratio}
    aug = SequenceAugmenter(num_items, operations=(op,), insert_pool=pool, **kwargs)
    out, ops = aug(ids, generator=torch.Generator().manual_seed(seed), return_operations=True)
    assert bool((ops == 0).all())
    for inp_row, out_row in zip(ids.tolist(), out.tolist()):
        check_row(op, inp_row, out_row, aug, pool)


@given(batch=augment_batches(), ratio=ratios, seed=seeds)
@settings(max_examples=25)
def test_mask_with_zero_writes_zeros_in_place(batch, ratio, seed):
    ids, num_items, _ = batch
    aug = SequenceAugmenter(num_items, operations=("mask",), mask_ratio=ratio, mask_id=0)
    out = aug(ids, generator=torch.Generator().manual_seed(seed))
    for inp_row, out_row in zip(ids.tolist(), out.tolist()):
        l, n = len(inp_row), len(real_items(inp_row))
        assert out_row[: l - n] == [0] * (l - n)
        tail = list(zip(inp_row[l - n :], out_row[l - n :]))
        assert all(b in (a, 0) for a, b in tail)  # kept in place, never re-aligned
        assert sum(b == 0 for _, b in tail) == int(ratio * n)


@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=20)
def test_default_insert_pool_is_all_items(batch, seed):
    ids, num_items, _ = batch
    aug = SequenceAugmenter(num_items, operations=("insert",), insert_ratio=1.0)
    out = aug(ids, generator=torch.Generator().manual_seed(seed))
    assert int(out.min()) >= 0 and int(out.max()) <= num_items
    for inp_row, out_row in zip(ids.tolist(), out.tolist()):
        n = len(real_items(inp_row))
        assert len(real_items(out_row)) == min(2 * n, len(inp_row))


@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=20)
def test_seeded_runs_repeat(batch, seed):
    ids, num_items, pool = batch
    aug = SequenceAugmenter(num_items, insert_pool=pool, reorder_ratio=0.6)
    first = aug(ids, generator=torch.Generator().manual_seed(seed), return_operations=True)
    again = aug(ids, generator=torch.Generator().manual_seed(seed), return_operations=True)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    torch.manual_seed(seed)
    global_first = aug(ids)
    torch.manual_seed(seed)
    assert torch.equal(aug(ids), global_first)


@pytest.mark.parametrize("op", OPS)
@given(batch=augment_batches(), seed=seeds)
@settings(max_examples=10)
def test_functions_match_single_operation_module(op, batch, seed):
    ids, num_items, pool = batch
    aug = SequenceAugmenter(num_items, operations=(op,), insert_pool=pool, reorder_ratio=0.5)
    expected = aug(ids, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    if op == "mask":
        got = mask_items(ids, 0.7, num_items=num_items, generator=g)
    elif op == "crop":
        got = crop_items(ids, 0.2, generator=g)
    elif op == "reorder":
        got = reorder_items(ids, 0.5, generator=g)
    else:
        got = insert_items(ids, 0.4, num_items=num_items, insert_pool=pool, generator=g)
    assert torch.equal(got, expected)


def test_all_padding_and_empty_batches():
    aug = SequenceAugmenter(5)
    zeros = torch.zeros(64, 7, dtype=torch.long)
    assert torch.equal(aug(zeros, generator=torch.Generator().manual_seed(1)), zeros)
    empty = torch.zeros(0, 4, dtype=torch.long)
    out, ops = aug(empty, return_operations=True)
    assert out.shape == (0, 4) and ops.shape == (0,)


def test_input_may_hold_the_mask_id():
    aug = SequenceAugmenter(3, mask_id=10)
    ids = torch.tensor([[0, 10, 2, 3]])
    assert aug(ids, generator=torch.Generator().manual_seed(0)).shape == (1, 4)


# ----------------------------------------------------------------------------- distributions

ROW = [0, 0, 1, 2, 3, 4, 5]  # n = 5, l = 7
DRAWS = 8000
MAX_TOTAL_VARIATION = 0.1  # sampling noise here is about 0.03


def exact_distribution(op: str, ratio: float, pool: list[int], length: int) -> dict:
    """Enumerate every outcome of ``op`` on ``ROW`` with its probability (the paper's recipe)."""
    items = real_items(ROW)
    n = len(items)
    dist: Counter = Counter()

    def pad(seq):
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


@pytest.mark.parametrize(
    ("op", "ratio", "length"),
    [("mask", 0.4, 7), ("crop", 0.4, 7), ("crop", 0.1, 7), ("reorder", 0.6, 7),
     ("insert", 0.4, 7), ("insert", 0.4, 6)],
)
def test_outcomes_follow_the_exact_distribution(op, ratio, length):
    pool = [8, 9]
    aug = SequenceAugmenter(
        9, operations=(op,), mask_id=99 if op == "mask" else None,
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


def test_operation_frequencies_follow_probs():
    probs = (0.1, 0.2, 0.3, 0.4)
    aug = SequenceAugmenter(3, operation_probs=probs)
    ids = torch.ones(20000, 1, dtype=torch.long)
    _, ops = aug(ids, generator=torch.Generator().manual_seed(7), return_operations=True)
    freq = torch.bincount(ops, minlength=4).double() / ops.numel()
    # standard error is below 0.004; the bound is 8 of them
    assert torch.allclose(freq, torch.tensor(probs, dtype=torch.float64), atol=0.03)
    uniform = SequenceAugmenter(3, operations=("crop", "mask"))
    _, ops = uniform(ids, generator=torch.Generator().manual_seed(8), return_operations=True)
    assert abs(ops.double().mean().item() - 0.5) < 0.03


def test_zero_probability_operation_never_drawn():
    aug = SequenceAugmenter(3, operations=("mask", "crop"), operation_probs=(0.0, 1.0))
    _, ops = aug(torch.ones(500, 2, dtype=torch.long), return_operations=True)
    assert bool((ops == 1).all())


# ----------------------------------------------------------------------------- speed

SPEED_BATCH, SPEED_LENGTH, SPEED_ITEMS = 2048, 50, 1000
MIN_SPEEDUP = 5.0
MIN_SPEEDUP_OVER_LISTS = 2.0


def speed_batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SPEED_ITEMS + 1, (SPEED_BATCH, SPEED_LENGTH), generator=g)
    lengths = torch.randint(1, SPEED_LENGTH + 1, (SPEED_BATCH,), generator=g)
    ids[torch.arange(SPEED_LENGTH) < (SPEED_LENGTH - lengths).unsqueeze(1)] = 0
    return ids


def best_time(fn, repeats: int = 5) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_speedups() -> tuple[float, float]:
    """Speed-ups over the torch per-row loop and the list loop (tensor in, tensor out).

    Best of 3 each, b=2048, l=50, on the CPU.
    """
    aug = SequenceAugmenter(SPEED_ITEMS)
    ids = speed_batch()
    g = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    # one thread for everything: the loops are single-threaded, and intra-op threads stall
    # badly when the machine is busy, which would make the comparison flaky
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fast = best_time(lambda: aug(ids, generator=g))
        torch_loop = best_time(lambda: reference_augment(ids, aug, g), repeats=2)
        list_loop = best_time(lambda: torch.tensor(python_loop(ids.tolist(), aug, rng)))
    finally:
        torch.set_num_threads(threads)
    return torch_loop / fast, list_loop / fast


def test_reference_loop_obeys_the_same_laws():
    aug = SequenceAugmenter(SPEED_ITEMS, reorder_ratio=0.5)
    ids = speed_batch(1)[:200]
    out, ops = reference_augment(ids, aug, torch.Generator().manual_seed(0))
    pool = torch.arange(1, SPEED_ITEMS + 1)
    for inp_row, out_row, op in zip(ids.tolist(), out.tolist(), ops.tolist()):
        if OPS[op] != "insert":  # the pool overlaps the items here
            check_row(OPS[op], inp_row, out_row, aug, pool)
    rows = python_loop(ids.tolist(), aug, random.Random(0))
    for inp_row, out_row, op in zip(ids.tolist(), rows, python_loop.ops):
        if op != "insert":
            check_row(op, inp_row, out_row, aug, pool)


def test_vectorised_is_at_least_five_times_faster_than_a_loop():
    over_torch_loop, over_list_loop = measure_speedups()
    assert over_torch_loop >= MIN_SPEEDUP, f"only {over_torch_loop:.1f}x the torch loop"
    # the reference repos' pure-Python list loop is cheap per row; measured 7-10x on an idle
    # machine (tests/bench_augment.py) but timing on a shared CI core is noisy, so this guard
    # only catches a regression to loop speed
    assert over_list_loop >= MIN_SPEEDUP_OVER_LISTS, f"only {over_list_loop:.1f}x the list loop"


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("item_ids", "error", "match"),
    [
        ([[0, 1]], TypeError, "torch.Tensor"),
        (torch.tensor([[0.0, 1.0]]), TypeError, "integer"),
        (torch.tensor([[0, 1]], dtype=torch.int32), TypeError, "torch.long"),
        (torch.tensor([0, 1]), ValueError, r"\(b, l\)"),
        (torch.zeros(2, 0, dtype=torch.long), ValueError, "l >= 1"),
        (torch.tensor([[0, 7]]), ValueError, r"\[0, 6\]"),
        (torch.tensor([[-1, 2]]), ValueError, r"\[0, 6\]"),
        (torch.tensor([[0, 1, 2], [1, 0, 2]]), ValueError, "row 1"),
        (torch.tensor([[3, 4, 0]]), ValueError, "row 0"),
    ],
)
def test_bad_item_ids(item_ids, error, match):
    with pytest.raises(error, match=match):
        SequenceAugmenter(5)(item_ids)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_items": 0}, ValueError, "num_items"),
        ({"num_items": 2.5}, TypeError, "num_items"),
        ({"operations": ()}, ValueError, "operations must not be empty"),
        ({"operations": ("mask", "drop")}, ValueError, "'drop'"),
        ({"operations": "mask"}, TypeError, "sequence of names"),
        ({"mask_ratio": -0.1}, ValueError, "mask_ratio"),
        ({"crop_ratio": 1.5}, ValueError, "crop_ratio"),
        ({"reorder_ratio": float("nan")}, ValueError, "reorder_ratio"),
        ({"insert_ratio": 2.0}, ValueError, "insert_ratio"),
        ({"mask_id": 3}, ValueError, "mask_id"),
        ({"mask_id": 6.0}, TypeError, "mask_id"),
        ({"insert_pool": torch.tensor([[1, 2]])}, ValueError, "insert_pool"),
        ({"insert_pool": torch.tensor([], dtype=torch.long)}, ValueError, "insert_pool"),
        ({"insert_pool": torch.tensor([0, 1])}, ValueError, r"insert_pool must lie in \[1, 5\]"),
        ({"insert_pool": torch.tensor([1, 6])}, ValueError, r"insert_pool must lie in \[1, 5\]"),
        ({"insert_pool": torch.tensor([1.0])}, TypeError, "insert_pool"),
        ({"insert_pool": [1, 2]}, TypeError, "insert_pool"),
        ({"operation_probs": (0.5, 0.5)}, ValueError, "one entry per operation"),
        ({"operation_probs": (0.5, 0.5, 0.5, 0.5)}, ValueError, "sum to 1"),
        ({"operation_probs": (1.5, -0.5, 0.0, 0.0)}, ValueError, ">= 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    kwargs = {"num_items": 5, **kwargs}
    with pytest.raises(error, match=match):
        SequenceAugmenter(**kwargs)


def test_bad_function_arguments():
    ids = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="ratio"):
        crop_items(ids, 1.2)
    with pytest.raises(ValueError, match="ratio"):
        reorder_items(ids, -0.2)
    with pytest.raises(ValueError, match="mask_id"):
        mask_items(ids, 0.5, mask_id=1, num_items=2)
    with pytest.raises(ValueError, match="insert_pool"):
        insert_items(ids, 0.5, num_items=2, insert_pool=torch.tensor([3]))
    with pytest.raises(ValueError, match="row 0"):
        crop_items(torch.tensor([[1, 0, 2]]))
