"""Full-ranking evaluation: ranks, HR@k / NDCG@k and the batched driver (evaluation.py)."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from strategies import seeds

from s4rec_components import (
    RankingResult,
    evaluate_ranking,
    rank_targets,
    ranking_metrics,
)


# ---------------------------------------------------------------------------- slow references
def reference_ranks(scores, targets, exclude, ignore_ids, history_value):
    """Rank transcribed from the protocol, one row and one column at a time, in float64."""
    out = []
    n = len(scores[0])
    for b, row in enumerate(scores):
        t = targets[b]
        history = set() if exclude is None else {i for i in exclude[b] if i != 0}
        ignored = {i for i in ignore_ids if 0 <= i < n}
        value = list(map(float, row))
        candidates = [j for j in range(n) if j not in ignored]
        if history_value is None:
            candidates = [j for j in candidates if j not in history or j == t]
        else:
            for j in history:
                if j not in ignored:
                    value[j] = float(history_value)
        rank = 0
        for j in candidates:
            if j == t:
                continue
            if value[j] > value[t] or (value[j] == value[t] and j < t):
                rank += 1
        out.append(rank)
    return out


def reference_metrics(ranks, ks):
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(1.0 for r in ranks if r < k) / len(ranks)
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return out


@st.composite
def ranking_problems(draw, max_batch: int = 8, max_items: int = 25, max_history: int = 8):
    """Scores from a small integer set (many ties), targets, histories that may hold the target."""
    b = draw(st.integers(1, max_batch))
    n = draw(st.integers(2, max_items))
    g = torch.Generator().manual_seed(draw(seeds))
    levels = draw(st.integers(1, 4))
    scores = torch.randint(-levels, levels + 1, (b, n), generator=g).to(torch.float64)
    if draw(st.booleans()):
        scores = scores + 0.5 * torch.rand(b, n, generator=g, dtype=torch.float64).round()
    targets = torch.randint(1, n, (b,), generator=g)
    h = draw(st.integers(0, max_history))
    history = torch.randint(0, n, (b, h), generator=g)
    if h > 0 and draw(st.booleans()):  # put the target into some histories (repeat purchase)
        rows = torch.rand(b, generator=g) < 0.5
        history[rows, 0] = targets[rows]
    use_history = draw(st.booleans())
    mask_id = n - 1 if draw(st.booleans()) else n + 3  # the mask id may have no column
    ignore = draw(st.sampled_from([(0,), (0, mask_id), (), (0, 1)]))
    history_value = draw(st.sampled_from([None, 0.0, 1.0, -0.5]))
    # targets must not be ignored
    allowed = [i for i in range(1, n) if i not in ignore]
    if not allowed:
        ignore = (0,)
        allowed = list(range(1, n))
    targets = torch.tensor([allowed[int(t) % len(allowed)] for t in targets])
    return scores, targets, history if use_history else None, ignore, history_value


# ---------------------------------------------------------------------------- rank_targets
@given(problem=ranking_problems())
@settings(max_examples=150)
def test_rank_targets_matches_reference(problem):
    scores, targets, history, ignore, history_value = problem
    expected = reference_ranks(scores.tolist(), targets.tolist(),
                               None if history is None else history.tolist(), ignore, history_value)
    for dtype in (torch.float64, torch.float32):
        got = rank_targets(scores.to(dtype), targets, history, ignore_ids=ignore, history_value=history_value)
        assert got.dtype == torch.long
        assert got.tolist() == expected


@given(problem=ranking_problems())
@settings(max_examples=30)
def test_rank_is_invariant_to_history_order_and_duplicates(problem):
    scores, targets, history, ignore, history_value = problem
    if history is None or history.shape[1] == 0:
        return
    a = rank_targets(scores, targets, history, ignore, history_value)
    doubled = torch.cat([history.flip(1), history], dim=1)
    b = rank_targets(scores, targets, doubled, ignore, history_value)
    assert torch.equal(a, b)


def test_rank_targets_closed_forms():
    scores = torch.tensor([[100.0, 1.0, 5.0, 3.0, 5.0, 2.0]])
    # 0 ignored; items 2 and 4 (5.0) beat 3 (3.0)
    assert rank_targets(scores, torch.tensor([3])).tolist() == [2]
    # excluding item 4 from the history removes one competitor
    assert rank_targets(scores, torch.tensor([3]), torch.tensor([[4, 0, 0]])).tolist() == [1]
    # padding column not ignored: the huge padding score counts
    assert rank_targets(scores, torch.tensor([3]), ignore_ids=()).tolist() == [3]
    # ties: item 4 ties with item 2, which has the lower id -> pessimistic rank 1; item 2 -> 0
    assert rank_targets(scores, torch.tensor([4])).tolist() == [1]
    assert rank_targets(scores, torch.tensor([2])).tolist() == [0]
    # all equal scores: rank = number of smaller candidate ids
    flat = torch.zeros(1, 6)
    assert rank_targets(flat, torch.tensor([5])).tolist() == [4]


def test_repeated_target_keeps_its_score_unless_iclrec_quirk():
    scores = torch.tensor([[0.0, 2.0, 1.0, 9.0, -1.0]])
    target = torch.tensor([3])
    history = torch.tensor([[3, 1]])  # the target was bought before
    assert rank_targets(scores, target, history).tolist() == [0]  # target kept, item 1 excluded
    # ICLRec's code sets every history score to 0, the target's included: items 1 (->0, id 1 < 3)
    # and 2 (1.0 > 0) now rank before it
    assert rank_targets(scores, target, history, history_value=0.0).tolist() == [2]
    # quirk without the target in the history: history items just score 0
    assert rank_targets(scores, torch.tensor([2]), torch.tensor([[1, 3]]), history_value=0.0).tolist() == [0]


def test_rank_targets_is_on_the_scores_device_and_batched():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(300, 50, generator=g)
    targets = torch.randint(1, 50, (300,), generator=g)
    history = torch.randint(0, 50, (300, 7), generator=g)
    full = rank_targets(scores, targets, history)
    parts = torch.cat([rank_targets(scores[i : i + 64], targets[i : i + 64], history[i : i + 64])
                       for i in range(0, 300, 64)])
    assert torch.equal(full, parts) and full.device == scores.device


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
        rank_targets(s, t, torch.tensor([[1], [7]]))
    with pytest.raises(ValueError, match="scores and exclude disagree"):
        rank_targets(s, t, torch.tensor([[1]]))
    with pytest.raises(TypeError, match="exclude must be an integer tensor"):
        rank_targets(s, t, torch.ones(2, 1))
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="scores must not be empty"):
        rank_targets(torch.zeros(2, 0), t)


# ---------------------------------------------------------------------------- ranking_metrics
@given(ranks=st.lists(st.integers(0, 40), min_size=1, max_size=60),
       ks=st.lists(st.integers(1, 30), min_size=1, max_size=4, unique=True))
def test_ranking_metrics_matches_reference(ranks, ks):
    got = ranking_metrics(torch.tensor(ranks), ks=ks)
    expected = reference_metrics(ranks, ks)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15)
        assert 0.0 <= got[key] <= 1.0
    for k in ks:  # NDCG <= HR, equal only when every hit is at rank 0
        assert got[f"NDCG@{k}"] <= got[f"HR@{k}"] + 1e-15


def test_ranking_metrics_closed_forms_and_key_order():
    perfect = ranking_metrics(torch.zeros(7, dtype=torch.long))
    assert list(perfect) == ["HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20"]
    assert all(v == 1.0 for v in perfect.values())
    assert all(v == 0.0 for v in ranking_metrics(torch.full((4,), 20)).values())
    one = ranking_metrics(torch.tensor([1]), ks=(2,))
    assert one["HR@2"] == 1.0 and one["NDCG@2"] == pytest.approx(1 / math.log2(3))


def test_ranking_metrics_errors():
    with pytest.raises(TypeError, match="ranks must be an integer tensor"):
        ranking_metrics(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="ranks must not be empty"):
        ranking_metrics(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="ranks must be >= 0"):
        ranking_metrics(torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="ks must be a non-empty sequence"):
        ranking_metrics(torch.tensor([0]), ks=(0,))
    with pytest.raises(ValueError, match=r"ranks must have shape \(u,\)"):
        ranking_metrics(torch.zeros(2, 2, dtype=torch.long))


# ---------------------------------------------------------------------------- evaluate_ranking
def toy_problem(users: int = 97, items: int = 30, length: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(items + 1, 8, generator=g)
    inputs = torch.randint(1, items + 1, (users, length), generator=g)
    inputs[:5, :3] = 0  # some left padding
    targets = torch.randint(1, items + 1, (users,), generator=g)
    history = torch.cat([inputs, torch.zeros(users, 2, dtype=torch.long)], dim=1)

    def score_fn(x):
        return table[x[:, -1]] @ table.T

    return score_fn, inputs, targets, history


@given(batch_size=st.integers(1, 120), history_value=st.sampled_from([None, 0.0]))
@settings(max_examples=15)
def test_evaluate_ranking_equals_one_shot_ranking(batch_size, history_value):
    score_fn, inputs, targets, history = toy_problem()
    result = evaluate_ranking(score_fn, inputs, targets, history, batch_size=batch_size,
                              history_value=history_value)
    ranks = rank_targets(score_fn(inputs), targets, history, history_value=history_value)
    assert torch.equal(result.ranks, ranks)
    assert result.metrics == ranking_metrics(ranks)
    assert result.ranks.device.type == "cpu"


def test_evaluate_ranking_no_grad_progress_and_per_user():
    score_fn, inputs, targets, history = toy_problem()
    weight = torch.randn(31, 31, requires_grad=True)
    calls = []

    def grad_fn(x):
        out = score_fn(x) @ weight
        calls.append(out.requires_grad)
        return out

    result = evaluate_ranking(grad_fn, inputs, targets, None, batch_size=40, progress=True, device="cpu",
                              ks=(1, 3))
    assert calls == [False, False, False]
    assert list(result.metrics) == ["HR@1", "NDCG@1", "HR@3", "NDCG@3"]
    lengths = torch.arange(97)
    table = result.per_user(lengths)
    assert torch.equal(table["rank"], result.ranks) and torch.equal(table["length"], lengths)
    assert float(table["NDCG@3"].mean()) == pytest.approx(result.metrics["NDCG@3"])
    head = lengths >= 50
    assert result.subset(head) == ranking_metrics(result.ranks[head], (1, 3))
    with pytest.raises(ValueError, match="mask selects no user"):
        result.subset(torch.zeros(97, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        result.subset(torch.zeros(97))


def test_ranking_result_is_a_plain_dataclass():
    r = RankingResult({"HR@5": 1.0, "NDCG@5": 1.0}, torch.tensor([0]), (5,))
    assert r.ks == (5,) and r.subset(torch.tensor([True])) == {"HR@5": 1.0, "NDCG@5": 1.0}


def test_evaluate_ranking_errors():
    score_fn, inputs, targets, history = toy_problem()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        evaluate_ranking(score_fn, inputs, targets, history, batch_size=0)
    with pytest.raises(ValueError, match="inputs and targets disagree"):
        evaluate_ranking(score_fn, inputs, targets[:3], history)
    with pytest.raises(ValueError, match="inputs and history disagree"):
        evaluate_ranking(score_fn, inputs, targets, history[:3])
    with pytest.raises(ValueError, match="score_fn must return one row per input row"):
        evaluate_ranking(lambda x: score_fn(x)[:1], inputs, targets, history)
    with pytest.raises(ValueError, match=r"score_fn output must have shape \(b, n\)"):
        evaluate_ranking(lambda x: score_fn(x)[0], inputs, targets, history)
    with pytest.raises(TypeError, match="inputs must be an integer tensor"):
        evaluate_ranking(score_fn, inputs.float(), targets, history)
