"""Full-ranking evaluation: ranks, HR@k / NDCG@k and the batched driver (evaluation.py).

Everything is checked against slow references written from the protocol, one row and one
column at a time in Python floats, on problems that hypothesis draws value by value (so a
failure shrinks to a few users and items): scores with many ties, -inf / inf / NaN, repeated
and out-of-range ignore ids, histories with repeats, padding and the target itself, and the
ICLRec ``history_value=0.0`` protocol.
"""

from __future__ import annotations

import io
import math
import weakref
from unittest import mock

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from s4rec_components import (
    RankingResult,
    evaluate_ranking,
    rank_targets,
    ranking_metrics,
    set_validate_args,
)
from s4rec_components import evaluation
from s4rec_components.evaluation import DEFAULT_MEMORY_BUDGET
from s4rec_components.ragged import Ragged

NAN, INF = float("nan"), float("inf")
FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------- slow references
def effective_target_score(row, t, history, ignore_ids, history_value):
    """The target's score after the protocol: ``history_value`` when the quirk replaces it."""
    n = len(row)
    ignored = {i for i in ignore_ids if 0 <= i < n}
    hist = {i for i in history if i != 0 and i not in ignored}
    if history_value is not None and t in hist:
        return float(history_value)
    return float(row[t])


def reference_rank(row, t, history, ignore_ids, history_value):
    """One row's rank transcribed from the protocol (pessimistic ties by item id)."""
    n = len(row)
    ignored = {i for i in ignore_ids if 0 <= i < n}
    hist = {i for i in history if i != 0 and i not in ignored}
    value = [float(v) for v in row]
    if history_value is None:
        candidates = [j for j in range(n) if j not in ignored and (j not in hist or j == t)]
    else:
        candidates = [j for j in range(n) if j not in ignored]
        for j in hist:
            value[j] = float(history_value)
    rank = 0
    for j in candidates:
        if j != t and (value[j] > value[t] or (value[j] == value[t] and j < t)):
            rank += 1
    return rank


def reference_ranks(scores, targets, history, ignore_ids, history_value):
    rows = [[] for _ in scores] if history is None else history
    return [reference_rank(s, t, h, ignore_ids, history_value) for s, t, h in zip(scores, targets, rows)]


def reference_metrics(ranks, ks):
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(1.0 for r in ranks if r < k) / len(ranks)
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return out


def as_padded(history, width=None):
    """Left-padded ``(b, w)`` tensor of ragged lists (0 = padding)."""
    w = max([len(h) for h in history] + [0]) if width is None else width
    return torch.tensor([[0] * (w - len(h)) + list(h) for h in history], dtype=torch.long).reshape(len(history), w)


def as_history(history, layout):
    if history is None:
        return None
    return Ragged.from_lists(history) if layout == "ragged" else as_padded(history)


# ---------------------------------------------------------------------------- strategies
halves = st.integers(-3, 3).map(lambda v: v / 2)  # few levels: many ties, exact in every dtype
specials = st.sampled_from([-INF, INF, NAN])


@st.composite
def ranking_problems(draw, max_batch: int = 6, max_items: int = 12, max_history: int = 6, nonfinite: bool = True):
    """``(scores, targets, history, ignore_ids, history_value)`` as Python lists, drawn value by value.

    Ignore ids may repeat and fall outside ``0..n-1``; histories hold padding 0, repeats and
    (often) the target itself.
    """
    b = draw(st.integers(1, max_batch))
    n = draw(st.integers(2, max_items))
    entry = st.one_of(halves, specials) if nonfinite and draw(st.booleans()) else halves
    scores = draw(st.lists(st.lists(entry, min_size=n, max_size=n), min_size=b, max_size=b))
    ignore = draw(st.lists(st.integers(-1, n + 1), max_size=4))
    allowed = [i for i in range(n) if i not in ignore]
    if not allowed:
        ignore = [i for i in ignore if i != n - 1]
        allowed = [n - 1]
    targets = draw(st.lists(st.sampled_from(allowed), min_size=b, max_size=b))
    history = None
    if draw(st.booleans()):
        history = draw(st.lists(st.lists(st.integers(0, n - 1), max_size=max_history), min_size=b, max_size=b))
        repeat = draw(st.lists(st.booleans(), min_size=b, max_size=b))
        history = [h + [t] if again else h for h, t, again in zip(history, targets, repeat)]
    history_value = draw(st.sampled_from([None, 0.0, 1.0, -0.5]))
    return scores, targets, history, tuple(ignore), history_value


def nan_target(scores, targets, history, ignore, history_value):
    rows = [[] for _ in scores] if history is None else history
    return any(
        math.isnan(effective_target_score(s, t, h, ignore, history_value)) for s, t, h in zip(scores, targets, rows)
    )


# ---------------------------------------------------------------------------- rank_targets
def test_repeated_ignore_id_issue_reproducer():
    """Issue 9.3: a repeated ignore id was subtracted twice and reported a hit."""
    scores = torch.tensor([[9.0, 1.0, 4.0, 3.0]])
    assert rank_targets(scores, torch.tensor([3]), ignore_ids=(0, 0)).tolist() == [1]
    assert rank_targets(scores, torch.tensor([3]), ignore_ids=(0, 0, 0, 7, -1)).tolist() == [1]
    result = evaluate_ranking(lambda x: scores.expand(len(x), -1), torch.zeros(1, 1, dtype=torch.long),
                              torch.tensor([3]), ignore_ids=(0, 0), ks=(1, 2))
    assert result.ranks.tolist() == [1] and result.metrics["HR@1"] == 0.0 and result.metrics["HR@2"] == 1.0


@given(problem=ranking_problems(), layout=st.sampled_from(["ragged", "padded"]),
       dtype=st.sampled_from(FLOAT_DTYPES))
@settings(max_examples=300)
def test_rank_targets_matches_reference(problem, layout, dtype):
    scores, targets, history, ignore, history_value = problem
    s = torch.tensor(scores, dtype=dtype)
    original = s.clone()
    t = torch.tensor(targets)
    exclude = as_history(history, layout)
    if nan_target(scores, targets, history, ignore, history_value):
        with pytest.raises(ValueError, match="NaN at some targets"):
            rank_targets(s, t, exclude=exclude, ignore_ids=ignore, history_value=history_value)
        return
    got = rank_targets(s, t, exclude=exclude, ignore_ids=ignore, history_value=history_value)
    assert got.dtype == torch.long and got.shape == (len(targets),)
    assert got.tolist() == reference_ranks(scores, targets, history, ignore, history_value)
    torch.testing.assert_close(s, original, rtol=0, atol=0, equal_nan=True)  # scores untouched, NaN included


@given(problem=ranking_problems(nonfinite=False), data=st.data())
@settings(max_examples=60)
def test_rank_is_invariant_to_history_order_repeats_and_ignore_repeats(problem, data):
    scores, targets, history, ignore, history_value = problem
    s, t = torch.tensor(scores), torch.tensor(targets)
    base = rank_targets(s, t, exclude=as_history(history, "ragged"), ignore_ids=ignore, history_value=history_value)
    if history is not None:
        shuffled = [data.draw(st.permutations(h + h)) for h in history]
        again = rank_targets(s, t, exclude=Ragged.from_lists(shuffled), ignore_ids=ignore,
                             history_value=history_value)
        assert torch.equal(base, again)
    doubled = rank_targets(s, t, exclude=as_history(history, "padded"), ignore_ids=ignore + ignore[::-1],
                           history_value=history_value)
    assert torch.equal(base, doubled)


def test_rank_targets_closed_forms():
    scores = torch.tensor([[100.0, 1.0, 5.0, 3.0, 5.0, 2.0]])
    three = torch.tensor([3])
    assert rank_targets(scores, three).tolist() == [2]  # 0 ignored; items 2 and 4 (5.0) beat 3
    assert rank_targets(scores, three, exclude=torch.tensor([[4, 0, 0]])).tolist() == [1]
    assert rank_targets(scores, three, exclude=Ragged.from_lists([[4, 4, 4]])).tolist() == [1]
    assert rank_targets(scores, three, ignore_ids=()).tolist() == [3]  # the padding column counts
    assert rank_targets(scores, torch.tensor([4])).tolist() == [1]  # tie with the lower id 2
    assert rank_targets(scores, torch.tensor([2])).tolist() == [0]
    assert rank_targets(torch.zeros(1, 6), torch.tensor([5])).tolist() == [4]  # all equal: lower ids
    # -inf target: only the other -inf columns with lower ids and every finite one beat it
    low = torch.tensor([[0.0, -INF, 2.0, -INF, NAN]])
    assert rank_targets(low, torch.tensor([3])).tolist() == [2]


def test_repeated_target_keeps_its_score_unless_iclrec_quirk():
    scores = torch.tensor([[0.0, 2.0, 1.0, 9.0, -1.0]])
    target = torch.tensor([3])
    history = torch.tensor([[3, 1]])  # the target was bought before
    assert rank_targets(scores, target, exclude=history).tolist() == [0]
    # ICLRec's code sets every history score to 0, the target's included: items 1 (->0, id 1 < 3)
    # and 2 (1.0 > 0) now rank before it
    assert rank_targets(scores, target, exclude=history, history_value=0.0).tolist() == [2]
    assert rank_targets(scores, torch.tensor([2]), exclude=torch.tensor([[1, 3]]),
                        history_value=0.0).tolist() == [0]


def test_rank_targets_on_random_floats_against_reference():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 700, generator=g)
    scores[:, 5] = scores[:, 9]  # a tie in every row
    targets = torch.randint(1, 700, (40,), generator=g)
    targets[:10] = 9
    history = [torch.randint(0, 700, (int(k),), generator=g).tolist() for k in torch.randint(0, 30, (40,), generator=g)]
    for history_value in (None, 0.0):
        got = rank_targets(scores, targets, exclude=Ragged.from_lists(history), ignore_ids=(0, 699),
                           history_value=history_value)
        expected = reference_ranks(scores.tolist(), targets.tolist(), history, (0, 699), history_value)
        assert got.tolist() == expected


def test_rank_targets_batches_agree_and_stay_on_device():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(300, 50, generator=g)
    targets = torch.randint(1, 50, (300,), generator=g)
    history = torch.randint(0, 50, (300, 7), generator=g)
    full = rank_targets(scores, targets, exclude=history)
    parts = torch.cat([rank_targets(scores[i : i + 64], targets[i : i + 64], exclude=history[i : i + 64])
                       for i in range(0, 300, 64)])
    assert torch.equal(full, parts) and full.device == scores.device


def test_rank_targets_accepts_non_contiguous_scores():
    scores = torch.tensor([[0.0, 3.0], [1.0, 2.0], [5.0, 4.0], [2.0, 0.0]]).T  # (2, 4), strided
    assert not scores.is_contiguous()
    assert rank_targets(scores, torch.tensor([1, 3])).tolist() == [2, 2]


def test_rank_targets_errors():
    s, t = torch.zeros(2, 5), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"scores must have shape \(b, n\)"):
        rank_targets(torch.zeros(5), t)
    with pytest.raises(TypeError, match="scores must be a floating-point tensor"):
        rank_targets(torch.zeros(2, 5, dtype=torch.long), t)
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        rank_targets(s, t.float())
    with pytest.raises(ValueError, match="scores and targets disagree"):
        rank_targets(s, torch.tensor([1]))
    with pytest.raises(ValueError, match=r"targets must be item ids in \[0, 4\]"):
        rank_targets(s, torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="targets must not be ignored ids"):
        rank_targets(s, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"exclude must hold item ids in \[0, 4\]"):
        rank_targets(s, t, exclude=torch.tensor([[1], [7]]))
    with pytest.raises(ValueError, match=r"exclude must hold item ids in \[0, 4\]"):
        rank_targets(s, t, exclude=Ragged.from_lists([[1], [-1]]))
    with pytest.raises(ValueError, match="scores and exclude disagree"):
        rank_targets(s, t, exclude=torch.tensor([[1]]))
    with pytest.raises(ValueError, match="exclude must have one row per scores row"):
        rank_targets(s, t, exclude=Ragged.from_lists([[1]]))
    with pytest.raises(TypeError, match="exclude must be an integer tensor"):
        rank_targets(s, t, exclude=torch.ones(2, 1))
    with pytest.raises(TypeError, match="exclude must be a Ragged"):
        rank_targets(s, t, exclude=[[1], [2]])
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(torch.tensor([[0.0, NAN, 1.0]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="scores must not be empty"):
        rank_targets(torch.zeros(2, 0), t)
    with pytest.raises(TypeError, match="ignore_ids entries must be an int, got bool"):
        rank_targets(s, t, ignore_ids=(0, True))
    with pytest.raises(TypeError, match="ignore_ids entries must be an int, got float"):
        rank_targets(s, t, ignore_ids=(0, 2.0))
    # a numpy integer counts as an int, as for every count of the library
    assert torch.equal(rank_targets(s, t, ignore_ids=(np.int64(0),)), rank_targets(s, t, ignore_ids=(0,)))
    with pytest.raises(TypeError, match="ignore_ids must be a sequence of ints"):
        rank_targets(s, t, ignore_ids=0)
    with pytest.raises(TypeError, match="history_value must be a real number"):
        rank_targets(s, t, history_value="0")
    with pytest.raises(ValueError, match="history_value must be finite"):
        rank_targets(s, t, history_value=NAN)
    with pytest.raises(TypeError):
        rank_targets(s, t, None)  # exclude is keyword-only


def test_value_checks_follow_the_global_switch():
    s = torch.tensor([[0.0, 1.0, 2.0]])
    set_validate_args(False)
    try:  # no value read: an out-of-contract target gives an unspecified rank, not an error
        assert rank_targets(s, torch.tensor([0])).shape == (1,)
        assert ranking_metrics(torch.tensor([0, 3]), ks=(1,)) == {"HR@1": 0.5, "NDCG@1": 0.5}
    finally:
        set_validate_args(True)
    with pytest.raises(ValueError, match="targets must not be ignored ids"):
        rank_targets(s, torch.tensor([0]))


# ---------------------------------------------------------------------------- ranking_metrics
@given(ranks=st.lists(st.integers(0, 40), min_size=1, max_size=60),
       ks=st.lists(st.integers(1, 30), min_size=1, max_size=4, unique=True))
def test_ranking_metrics_matches_reference(ranks, ks):
    got = ranking_metrics(torch.tensor(ranks), ks=ks)
    expected = reference_metrics(ranks, ks)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15)
    for k in ks:  # NDCG <= HR
        assert got[f"NDCG@{k}"] <= got[f"HR@{k}"]


@given(ranks=st.lists(st.integers(0, 25), min_size=1, max_size=40), data=st.data())
def test_ranking_metrics_depend_on_the_multiset_only(ranks, data):
    """Bitwise the same for any order of the users: what makes sharded evaluation exact."""
    shuffled = data.draw(st.permutations(ranks))
    assert ranking_metrics(torch.tensor(ranks)) == ranking_metrics(torch.tensor(shuffled))


def test_ranking_metrics_closed_forms_and_key_order():
    perfect = ranking_metrics(torch.zeros(7, dtype=torch.long))
    assert list(perfect) == ["HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20"]
    assert all(v == 1.0 for v in perfect.values())
    assert all(v == 0.0 for v in ranking_metrics(torch.full((4,), 20)).values())
    one = ranking_metrics(torch.tensor([1]), ks=(2,))
    assert one["HR@2"] == 1.0 and one["NDCG@2"] == 1 / math.log2(3)


def test_ranking_metrics_errors():
    with pytest.raises(TypeError, match="ranks must be an integer tensor"):
        ranking_metrics(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="ranks must not be empty"):
        ranking_metrics(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="ranks must be >= 0"):
        ranking_metrics(torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="ks must be >= 1"):
        ranking_metrics(torch.tensor([0]), ks=(0,))
    with pytest.raises(ValueError, match="ks must be a non-empty sequence"):
        ranking_metrics(torch.tensor([0]), ks=())
    with pytest.raises(ValueError, match="ks must not repeat"):
        ranking_metrics(torch.tensor([0]), ks=(5, 5))
    with pytest.raises(TypeError, match="ks must be an int"):
        ranking_metrics(torch.tensor([0]), ks=(True,))
    with pytest.raises(ValueError, match=r"ranks must have shape \(u,\)"):
        ranking_metrics(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError):
        ranking_metrics(torch.tensor([0]), (5,))  # ks is keyword-only


# ---------------------------------------------------------------------------- evaluate_ranking
def table_scorer(scores, calls=None):
    """``score_fn`` over inputs that are user numbers: row ``x[i, 0]`` of a fixed score table."""
    def score_fn(x):
        if calls is not None:
            calls.append((len(x), torch.is_grad_enabled()))
        return scores[x[:, 0]]
    return score_fn


@given(problem=ranking_problems(nonfinite=False), layout=st.sampled_from(["ragged", "padded"]),
       batch_size=st.integers(1, 8), budget=st.one_of(st.none(), st.integers(1, 300)))
@settings(max_examples=120)
def test_evaluate_ranking_matches_reference(problem, layout, batch_size, budget):
    scores, targets, history, ignore, history_value = problem
    s = torch.tensor(scores)
    users = torch.arange(len(targets)).unsqueeze(1)
    calls = []
    result = evaluate_ranking(table_scorer(s, calls), users, torch.tensor(targets),
                              history=as_history(history, layout), batch_size=batch_size, ignore_ids=ignore,
                              history_value=history_value, memory_budget=budget, ks=(1, 3))
    expected = reference_ranks(scores, targets, history, ignore, history_value)
    assert result.ranks.tolist() == expected and result.ranks.device.type == "cpu"
    assert result.metrics == ranking_metrics(torch.tensor(expected), ks=(1, 3))
    for key, value in reference_metrics(expected, (1, 3)).items():
        assert result.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-15)
    # one user first (it tells n), then batches of batch_size capped by the memory budget
    n = len(scores[0])
    row_bytes = n * (s.element_size() + 1) + evaluation._buffer_width(n)  # scores, tie block, bool buffer
    per_batch = max(1, min(batch_size, (DEFAULT_MEMORY_BUDGET if budget is None else budget) // row_bytes))
    sizes = [size for size, _ in calls]
    assert sizes[0] == 1 and sum(sizes) == len(targets)
    assert all(size == per_batch for size in sizes[1:-1]) and all(size <= per_batch for size in sizes[1:])
    assert not any(grad for _, grad in calls)


def test_memory_budget_bounds_the_batch():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(100, 1000, generator=g)
    targets = torch.randint(1, 1000, (100,), generator=g)
    calls = []
    budget = 10 * 1000 * 6  # ten users of float32 scores plus their two bool blocks
    for dense in (False, True):
        calls.clear()
        with mock.patch.object(evaluation, "_counts_densely", lambda device: dense):
            result = evaluate_ranking(table_scorer(scores, calls), torch.arange(100).unsqueeze(1), targets,
                                      batch_size=64, memory_budget=budget)
        assert [size for size, _ in calls] == [1] + [10] * 9 + [9]
        assert torch.equal(result.ranks, rank_targets(scores, targets))


def test_evaluate_ranking_progress_bar_only_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    scores = torch.randn(30, 10)
    args = (table_scorer(scores), torch.arange(30).unsqueeze(1), torch.randint(1, 10, (30,)))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    evaluate_ranking(*args, progress=True, batch_size=4)
    assert pipe.getvalue() == ""  # not a terminal: no bar
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    evaluate_ranking(*args, progress=True, batch_size=4)
    assert "ranking" in terminal.getvalue()
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    evaluate_ranking(*args, progress=False, batch_size=4)
    assert quiet.getvalue() == ""


def test_evaluate_ranking_per_user_and_subset():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(97, 31, generator=g)
    targets = torch.randint(1, 31, (97,), generator=g)
    result = evaluate_ranking(table_scorer(scores), torch.arange(97).unsqueeze(1), targets, batch_size=40,
                              device="cpu", ks=(1, 3))
    assert list(result.metrics) == ["HR@1", "NDCG@1", "HR@3", "NDCG@3"]
    lengths = torch.arange(97)
    table = result.per_user(lengths)
    assert torch.equal(table["rank"], result.ranks) and torch.equal(table["length"], lengths)
    assert float(table["NDCG@3"].mean()) == pytest.approx(result.metrics["NDCG@3"])
    head = lengths >= 50
    assert result.subset(head) == ranking_metrics(result.ranks[head], ks=(1, 3))
    with pytest.raises(ValueError, match="mask selects no user"):
        result.subset(torch.zeros(97, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        result.subset(torch.zeros(97))


def test_ranking_result_is_a_plain_dataclass():
    r = RankingResult({"HR@5": 1.0, "NDCG@5": 1.0}, torch.tensor([0]), (5,))
    assert r.ks == (5,) and r.subset(torch.tensor([True])) == {"HR@5": 1.0, "NDCG@5": 1.0}


def test_evaluate_ranking_errors():
    scores = torch.randn(10, 6)
    fn, users, targets = table_scorer(scores), torch.arange(10).unsqueeze(1), torch.randint(1, 6, (10,))
    history = torch.randint(0, 6, (10, 3))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate_ranking(fn, users, targets, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        evaluate_ranking(fn, users, targets, batch_size=2.0)
    with pytest.raises(ValueError, match="memory_budget must be >= 1"):
        evaluate_ranking(fn, users, targets, memory_budget=0)
    with pytest.raises(TypeError, match="progress must be a bool"):
        evaluate_ranking(fn, users, targets, progress=1)
    with pytest.raises(TypeError, match="distributed must be a bool"):
        evaluate_ranking(fn, users, targets, distributed="yes")
    with pytest.raises(TypeError, match="score_fn must be callable"):
        evaluate_ranking(scores, users, targets)
    with pytest.raises(ValueError, match="inputs and targets disagree"):
        evaluate_ranking(fn, users, targets[:3])
    with pytest.raises(ValueError, match="inputs and history disagree"):
        evaluate_ranking(fn, users, targets, history=history[:3])
    with pytest.raises(ValueError, match="history must have one row per inputs row"):
        evaluate_ranking(fn, users, targets, history=Ragged.from_lists([[1]]))
    with pytest.raises(ValueError, match=r"history must hold item ids in \[0, 5\]"):
        evaluate_ranking(fn, users, targets, history=history + 3)
    with pytest.raises(ValueError, match=r"targets must be item ids in \[0, 5\]"):
        evaluate_ranking(fn, users, targets + 6)
    with pytest.raises(ValueError, match="targets must not be ignored ids"):
        evaluate_ranking(fn, users, targets, ignore_ids=(0, int(targets[4])))
    with pytest.raises(ValueError, match="score_fn must return one row per input row"):
        evaluate_ranking(lambda x: fn(x)[:1], users, targets, batch_size=4)
    with pytest.raises(ValueError, match=r"score_fn output must have shape \(b, n\)"):
        evaluate_ranking(lambda x: fn(x)[0], users, targets)
    with pytest.raises(TypeError, match="score_fn output must be a floating-point tensor"):
        evaluate_ranking(lambda x: fn(x).long(), users, targets)
    with pytest.raises(TypeError, match="score_fn output must be a torch.Tensor"):
        evaluate_ranking(lambda x: fn(x).tolist(), users, targets)
    with pytest.raises(ValueError, match="the same number of item columns"):
        evaluate_ranking(lambda x: fn(x)[:, : 6 - (len(x) > 1)], users, targets)
    with pytest.raises(TypeError, match="inputs must be an integer tensor"):
        evaluate_ranking(fn, users.float(), targets)
    with pytest.raises(ValueError, match="NaN at some targets"):
        evaluate_ranking(lambda x: fn(x) * NAN, users, targets)
    with pytest.raises(TypeError):
        evaluate_ranking(fn, users, targets, history)  # history is keyword-only


@given(problem=ranking_problems(max_items=9), width=st.integers(1, 4))
@settings(max_examples=60)
def test_column_blocks_of_the_counts_are_exact(problem, width):
    """The counts go per block of columns; small blocks (padding included) change nothing."""
    scores, targets, history, ignore, history_value = problem
    if nan_target(scores, targets, history, ignore, history_value):
        return
    args = (torch.tensor(scores), torch.tensor(targets))
    kwargs = dict(exclude=as_history(history, "ragged"), ignore_ids=ignore, history_value=history_value)
    with mock.patch.object(evaluation, "_WORDS_PER_BLOCK", width):
        got = rank_targets(*args, **kwargs)
    assert got.tolist() == reference_ranks(scores, targets, history, ignore, history_value)


@given(problem=ranking_problems(), layout=st.sampled_from(["ragged", "padded"]), batch_size=st.integers(1, 4))
@settings(max_examples=150)
def test_dense_counting_of_gpus_matches_reference(problem, layout, batch_size):
    """Off the CPU ranks come from plain comparisons (no buffer, no sync); forced here on the CPU."""
    scores, targets, history, ignore, history_value = problem
    s, t = torch.tensor(scores), torch.tensor(targets)
    kwargs = dict(ignore_ids=ignore, history_value=history_value)
    with mock.patch.object(evaluation, "_counts_densely", lambda device: True):
        if nan_target(scores, targets, history, ignore, history_value):
            with pytest.raises(ValueError, match="NaN at some targets"):
                rank_targets(s, t, exclude=as_history(history, layout), **kwargs)
            with pytest.raises(ValueError, match="NaN at some targets"):
                evaluate_ranking(lambda x: s[x[:, 0]], torch.arange(len(targets))[:, None], t,
                                 history=as_history(history, layout), batch_size=batch_size, **kwargs)
            return
        got = rank_targets(s, t, exclude=as_history(history, layout), **kwargs)
        result = evaluate_ranking(lambda x: s[x[:, 0]], torch.arange(len(targets))[:, None], t,
                                  history=as_history(history, layout), batch_size=batch_size, **kwargs)
    expected = reference_ranks(scores, targets, history, ignore, history_value)
    assert got.tolist() == expected and result.ranks.tolist() == expected


@pytest.mark.parametrize("dense", [False, True])
def test_no_temporary_larger_than_one_bool_per_score(dense):
    """Beside the reused buffer, each path allocates at most one bool per score at a time: no
    int cast of a (b, n) mask (``mask.sum(dtype=...)`` copies it at 4-8 bytes per score)."""
    from torch.profiler import ProfilerActivity, profile

    b, n = 16, 50_000
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(b, n, generator=g).round(decimals=1)  # ties in every row
    targets = torch.randint(1, n, (b,), generator=g)
    buffer = evaluation._count_buffer(b, n, scores.device)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        ranks = evaluation._rank_impl(scores, targets, None, torch.tensor([0]), None, buffer, [], dense)
    assert max(event.cpu_memory_usage for event in prof.events()) <= b * n
    assert ranks.tolist() == rank_targets(scores, targets).tolist()


@pytest.mark.parametrize("n", [1, 7, 10, 2039, 2040, 2041, 4081, 12102])
def test_count_buffer_pads_a_few_bytes_and_counts_exactly(n):
    """The bool buffer is ``n`` columns plus at most a word per block of padding (a small
    catalogue once paid a whole 2040-byte block per row), and its counts stay exact."""
    g = torch.Generator().manual_seed(n)
    scores = torch.randn(5, n, generator=g)
    threshold = scores[:, :1]
    buffer = evaluation._count_buffer(5, n, scores.device)
    blocks = -(-n // (8 * evaluation._WORDS_PER_BLOCK))
    assert n <= buffer.shape[1] <= n + 7 + 8 * blocks
    counts = evaluation._count(torch.gt, scores, threshold, buffer)
    assert counts.tolist() == (scores > threshold).sum(1).tolist()


def test_a_small_catalogue_keeps_the_memory_budget():
    """Score block plus bool buffer of one batch stay within ``memory_budget`` for any ``n``."""
    allocated = []
    real = evaluation._count_buffer

    def recording(rows, n, device):
        buffer = real(rows, n, device)
        allocated.append((rows, n, buffer.numel()))
        return buffer

    table, budget = torch.randn(20_000, 10), 2**20
    targets = torch.randint(1, 10, (20_000,), generator=torch.Generator().manual_seed(0))
    with mock.patch.object(evaluation, "_count_buffer", recording):
        result = evaluate_ranking(lambda x: table[x[:, 0]], torch.arange(20_000)[:, None], targets,
                                  batch_size=20_000, memory_budget=budget)
    (rows, n, buffer_bytes), = allocated
    assert rows * n * (table.element_size() + 1) + buffer_bytes <= budget
    assert result.ranks.tolist() == rank_targets(table, targets).tolist()


def test_a_nan_target_in_a_late_batch_is_caught():
    """The NaN checks of the batches are read back once, after the last batch: none is lost."""
    table = torch.randn(8, 6)
    table[6, 3] = NAN  # user 6's target scores NaN; batches of 2 users: the fourth batch
    users, targets = torch.arange(8)[:, None], torch.full((8,), 3)
    for dense in (False, True):
        with mock.patch.object(evaluation, "_counts_densely", lambda device: dense):
            with pytest.raises(ValueError, match="NaN at some targets"):
                evaluate_ranking(lambda x: table[x[:, 0]], users, targets, batch_size=2)
            set_validate_args(False)
            try:
                evaluate_ranking(lambda x: table[x[:, 0]], users, targets, batch_size=2)  # the switch
            finally:
                set_validate_args(True)


@pytest.mark.slow
def test_counts_of_long_rows_are_exact():
    """70,001 columns (35 blocks, byte lanes filled to 255): counts above 2**15 and 2**16 stay exact."""
    n = 70_001
    scores = torch.zeros(3, n)
    scores[0, 1:] = 1.0  # target 5 of row 0 scores 1 like every other real item: ties only
    scores[1] = torch.arange(n, dtype=torch.float32)  # target 10: everything above beats it
    scores[2] = -torch.arange(n, dtype=torch.float32)  # target n - 1: last
    targets = torch.tensor([5, 10, n - 1])
    assert rank_targets(scores, targets).tolist() == [4, n - 11, n - 2]
    assert rank_targets(scores.double(), targets, ignore_ids=()).tolist() == [4, n - 11, n - 1]


def test_one_score_block_alive_at_a_time():
    """The previous batch's scores are freed before ``score_fn`` computes the next batch."""
    table = torch.randn(20, 7)
    previous: list[weakref.ref] = []
    alive_at_call: list[bool] = []

    def score_fn(x):
        alive_at_call.append(bool(previous) and previous[-1]() is not None)
        out = table[x[:, 0]].clone()
        previous.append(weakref.ref(out))
        return out

    evaluate_ranking(score_fn, torch.arange(20).unsqueeze(1), torch.randint(1, 7, (20,)),
                     history=Ragged.from_lists([[1, 2]] * 20), batch_size=4)
    assert len(alive_at_call) == 6 and not any(alive_at_call)
