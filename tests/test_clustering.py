"""OnlineIntentClustering (S4Rec Eq. 7-11): reference loss, laws, freezing, gradients, errors."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given, settings
from strategies import float_tensors, seeds, temperatures

from s4rec_components import OnlineIntentClustering, sinkhorn_knopp
from s4rec_components.clustering import online_clustering

# Sinkhorn warns when b < k (equipartition impossible); property tests draw such batches.
pytestmark = pytest.mark.filterwarnings("ignore:equipartition cannot hold:UserWarning")


# --------------------------------------------------------------------------------------------
# Slow references, transcribed from Eq. 7-11 (and SwAV's distributed_sinkhorn)
# --------------------------------------------------------------------------------------------


def ref_normalize(rows):
    return [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in rows]


def ref_scores(z, prototypes, normalize):
    z_rows = ref_normalize(z.tolist()) if normalize else z.tolist()
    mu_rows = ref_normalize(prototypes.tolist())
    return [[sum(a * b for a, b in zip(zr, mr)) for mr in mu_rows] for zr in z_rows]


def ref_softmax(row, temperature):
    peak = max(row)
    exps = [math.exp((s - peak) / temperature) for s in row]
    total = sum(exps)
    return [e / total for e in exps]


def ref_sinkhorn(scores, iters, epsilon):
    """SwAV: Q = exp(S / eps)^T, normalise, then alternate prototype / sample rounds."""
    b, k = len(scores), len(scores[0])
    peak = max(max(row) for row in scores)
    q = [[math.exp((scores[u][c] - peak) / epsilon) for u in range(b)] for c in range(k)]
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(iters):
        q = [[v / sum(row) / k for v in row] for row in q]  # each prototype gets mass 1/k
        cols = [sum(q[c][u] for c in range(k)) for u in range(b)]
        q = [[q[c][u] / cols[u] / b for u in range(b)] for c in range(k)]  # each sample 1/b
    return [[q[c][u] * b for c in range(k)] for u in range(b)]


def ref_loss(z, prototypes, temperature, epsilon, iters, normalize):
    scores = ref_scores(z, prototypes, normalize)
    probs = [ref_softmax(row, temperature) for row in scores]
    targets = ref_sinkhorn(scores, iters, epsilon)
    per_sample = [
        -sum(q * math.log(p) for q, p in zip(qrow, prow)) for qrow, prow in zip(targets, probs)
    ]
    return sum(per_sample) / len(per_sample), probs, targets


@st.composite
def clustering_cases(draw, max_b=12, max_k=6, max_d=6):
    b = draw(st.integers(1, max_b))
    k = draw(st.integers(1, max_k))
    d = draw(st.integers(1, max_d))
    z = draw(float_tensors((b, d)))
    prototypes = draw(float_tensors((k, d)))
    return z, prototypes


def nonzero_rows(x):
    return bool((x.norm(dim=1) > 1e-3).all())


# --------------------------------------------------------------------------------------------
# Reference and closed forms
# --------------------------------------------------------------------------------------------


@settings(max_examples=30)
@given(
    case=clustering_cases(),
    temperature=temperatures,
    epsilon=st.sampled_from([0.05, 0.2, 1.0]),
    iters=st.integers(1, 4),
    normalize=st.booleans(),
)
def test_loss_probs_targets_match_reference(case, temperature, epsilon, iters, normalize):
    z, prototypes = case
    assume(nonzero_rows(prototypes) and (nonzero_rows(z) or not normalize))
    if not normalize:
        z = z / 3  # keep exp(S / eps) of the reference in range
    out = online_clustering(z, prototypes, temperature, epsilon, iters, normalize)
    loss, probs, targets = ref_loss(z, prototypes, temperature, epsilon, iters, normalize)
    probs = torch.tensor(probs, dtype=torch.float64)
    targets = torch.tensor(targets, dtype=torch.float64)
    torch.testing.assert_close(out.targets, targets, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.probs, probs, atol=1e-9, rtol=1e-9)
    # the loss against the float64 reference up to the float32 precision of Sinkhorn's q
    log_p = probs.clamp_min(1e-300).log()
    scale = float((-log_p).sum(1).max()) + 1.0
    assert abs(out.loss.item() - loss) <= 2e-5 * scale


def test_module_matches_the_function_and_the_reference():
    torch.manual_seed(0)
    module = OnlineIntentClustering(hidden_size=5, num_prototypes=3, temperature=0.2).double()
    z = torch.randn(9, 5, dtype=torch.float64)
    out = module(z)
    expected = online_clustering(z, module.prototypes, 0.2, 0.05, 3, True)
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want)
    loss, _, _ = ref_loss(z, module.prototypes.detach(), 0.2, 0.05, 3, True)
    assert abs(out.loss.item() - loss) < 1e-4


@given(b=st.integers(1, 10), k=st.integers(1, 8), d=st.integers(1, 6), temperature=temperatures)
def test_equal_scores_give_uniform_p_q_and_loss_log_k(b, k, d, temperature):
    z = torch.zeros(b, d, dtype=torch.float64)  # all scores 0 without normalisation
    prototypes = torch.randn(k, d, dtype=torch.float64) + 0.1
    out = online_clustering(z, prototypes, temperature, normalize=False)
    uniform = torch.full((b, k), 1.0 / k, dtype=torch.float64)
    torch.testing.assert_close(out.probs, uniform)
    torch.testing.assert_close(out.targets, uniform)
    assert math.isclose(out.loss.item(), math.log(k), rel_tol=1e-6, abs_tol=1e-7)


def test_targets_are_sinkhorn_of_the_scores():
    torch.manual_seed(1)
    z, prototypes = torch.randn(16, 4), torch.randn(5, 4)
    out = online_clustering(z, prototypes, epsilon=0.1, sinkhorn_iters=5)
    scores = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(
        prototypes, dim=1
    ).T
    torch.testing.assert_close(out.targets, sinkhorn_knopp(scores, 5, 0.1))
    assert not out.targets.requires_grad


# --------------------------------------------------------------------------------------------
# Laws
# --------------------------------------------------------------------------------------------


@given(
    case=clustering_cases(),
    temperature=temperatures,
    assign_from=st.sampled_from(["targets", "probs"]),
)
def test_outputs_are_valid_distributions_and_assignments(case, temperature, assign_from):
    z, prototypes = case
    z = z * 50  # large inputs: still finite after normalisation
    out = online_clustering(z, prototypes, temperature, assign_from=assign_from)
    b, k = z.shape[0], prototypes.shape[0]
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.loss.item() >= 0.0
    ones = torch.ones(b, dtype=torch.float64)
    torch.testing.assert_close(out.targets.sum(1), ones, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.probs.sum(1), ones)
    assert (out.targets >= 0).all() and (out.probs >= 0).all()
    assert out.assignments.dtype == torch.long and out.assignments.shape == (b,)
    assert ((out.assignments >= 0) & (out.assignments < k)).all()
    source = out.targets if assign_from == "targets" else out.probs
    picked = source.gather(1, out.assignments[:, None]).squeeze(1)
    torch.testing.assert_close(picked, source.max(dim=1).values)
    assume(nonzero_rows(prototypes))
    torch.testing.assert_close(out.prototypes.norm(dim=1), torch.ones(k, dtype=torch.float64))


@given(case=clustering_cases(max_b=10), seed=seeds)
def test_permuting_the_batch_permutes_the_outputs(case, seed):
    z, prototypes = case
    perm = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))
    out = online_clustering(z, prototypes)
    permuted = online_clustering(z[perm], prototypes)
    torch.testing.assert_close(permuted.targets, out.targets[perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted.probs, out.probs[perm])
    torch.testing.assert_close(permuted.loss, out.loss, atol=1e-5, rtol=1e-5)
    top2 = out.targets.topk(min(2, out.targets.shape[1]), dim=1).values
    clear = (top2[:, 0] - top2[:, -1] > 1e-3) | (top2.shape[1] == 1)
    assert torch.equal(permuted.assignments[clear[perm]], out.assignments[perm][clear[perm]])


@given(case=clustering_cases(), seed=seeds)
def test_scaling_z_changes_nothing_when_normalized(case, seed):
    z, prototypes = case
    g = torch.Generator().manual_seed(seed)
    factor = 0.5 + torch.rand(z.shape[0], 1, generator=g, dtype=torch.float64) * 4
    a, b = online_clustering(z, prototypes), online_clustering(z * factor, prototypes)
    torch.testing.assert_close(a.probs, b.probs)
    torch.testing.assert_close(a.targets, b.targets, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# Gradients and freezing
# --------------------------------------------------------------------------------------------


def test_gradient_reaches_z_and_prototypes():
    torch.manual_seed(0)
    module = OnlineIntentClustering(hidden_size=6, num_prototypes=4)
    z = torch.randn(12, 6, requires_grad=True)
    out = module(z)
    out.loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0 and torch.isfinite(z.grad).all()
    assert module.prototypes.grad is not None and module.prototypes.grad.abs().sum() > 0
    assert out.prototypes.requires_grad


def test_returned_prototypes_carry_gradient_to_the_parameter():
    torch.manual_seed(0)
    module = OnlineIntentClustering(hidden_size=6, num_prototypes=4)
    out = module(torch.randn(8, 6))
    out.prototypes[out.assignments].sum().backward()  # e.g. a distillation teacher
    assert module.prototypes.grad is not None and module.prototypes.grad.abs().sum() > 0


def test_freezing_blocks_prototype_gradients_for_the_first_steps():
    torch.manual_seed(0)
    module = OnlineIntentClustering(hidden_size=6, num_prototypes=4, freeze_prototypes_steps=2)
    for step in range(4):
        module.prototypes.grad = None
        z = torch.randn(12, 6, requires_grad=True)
        assert module.frozen == (step < 2)
        out = module(z)
        (out.loss + out.prototypes.sum()).backward()
        assert z.grad is not None and z.grad.abs().sum() > 0  # the encoder always learns
        grad = module.prototypes.grad
        if step < 2:
            assert grad is None or torch.equal(grad, torch.zeros_like(grad)), step
            assert not out.prototypes.requires_grad
        else:
            assert grad is not None and grad.abs().sum() > 0, step
        assert int(module.step) == step + 1


def test_step_counts_only_training_forwards_and_is_saved():
    module = OnlineIntentClustering(hidden_size=3, num_prototypes=2, freeze_prototypes_steps=1)
    module.eval()
    module(torch.randn(4, 3))
    assert int(module.step) == 0 and module.frozen
    module.train()
    module(torch.randn(4, 3))
    assert int(module.step) == 1 and not module.frozen
    state = module.state_dict()
    assert set(state) == {"prototypes", "step"} and int(state["step"]) == 1
    fresh = OnlineIntentClustering(hidden_size=3, num_prototypes=2, freeze_prototypes_steps=1)
    fresh.load_state_dict(state)
    assert not fresh.frozen and torch.equal(fresh.prototypes, module.prototypes)


def test_step_is_not_counted_when_the_input_is_rejected():
    module = OnlineIntentClustering(hidden_size=3, num_prototypes=2)
    with pytest.raises(ValueError, match="finite"):
        module(torch.tensor([[1.0, float("nan"), 0.0]]))
    assert int(module.step) == 0


def test_initial_prototypes_are_unit_rows_and_normalize_false_uses_raw_z():
    torch.manual_seed(0)
    module = OnlineIntentClustering(hidden_size=5, num_prototypes=7, normalize=False)
    assert module.prototypes.shape == (7, 5)
    torch.testing.assert_close(module.prototypes.norm(dim=1), torch.ones(7))
    z = torch.randn(10, 5) * 3
    out = module(z)
    scores = z @ module.prototypes.detach().T
    torch.testing.assert_close(out.probs, torch.softmax(scores / 0.1, dim=1))


def test_half_precision_input_is_computed_in_float32():
    module = OnlineIntentClustering(hidden_size=4, num_prototypes=3).to(torch.bfloat16)
    out = module(torch.randn(8, 4, dtype=torch.bfloat16))
    assert out.loss.dtype == torch.float32 and out.probs.dtype == torch.float32
    assert torch.isfinite(out.loss)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(hidden_size=0), ValueError, "hidden_size must be >= 1"),
        (dict(hidden_size=2.5), TypeError, "hidden_size must be an int"),
        (dict(hidden_size=4, num_prototypes=0), ValueError, "num_prototypes must be >= 1"),
        (dict(hidden_size=4, temperature=0.0), ValueError, "temperature must be > 0"),
        (dict(hidden_size=4, epsilon=-1.0), ValueError, "epsilon must be > 0"),
        (dict(hidden_size=4, sinkhorn_iters=0), ValueError, "sinkhorn_iters must be >= 1"),
        (dict(hidden_size=4, sinkhorn_iters=True), TypeError, "sinkhorn_iters must be an int"),
        (dict(hidden_size=4, freeze_prototypes_steps=-1), ValueError, "freeze_prototypes_steps"),
        (dict(hidden_size=4, assign_from="logits"), ValueError, "assign_from must be one of"),
    ],
)
def test_constructor_rejects_bad_hyper_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        OnlineIntentClustering(**kwargs)


def test_forward_rejects_bad_inputs():
    module = OnlineIntentClustering(hidden_size=4, num_prototypes=3)
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        module([[0.0] * 4])
    with pytest.raises(ValueError, match=r"z must have shape \(b, d\)"):
        module(torch.randn(4))
    with pytest.raises(ValueError, match="hidden_size = 4, got shape \\(2, 5\\)"):
        module(torch.randn(2, 5))
    with pytest.raises(TypeError, match="floating-point"):
        module(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="must not be empty"):
        module(torch.randn(0, 4))
    with pytest.raises(ValueError, match="finite"):
        module(torch.tensor([[float("inf"), 0.0, 0.0, 0.0]]))


def test_function_rejects_bad_inputs():
    z, mu = torch.randn(3, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match="disagree on d"):
        online_clustering(z, torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"prototypes must have shape \(k, d\)"):
        online_clustering(z, torch.randn(4))
    with pytest.raises(TypeError, match="prototypes must be a floating-point"):
        online_clustering(z, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        online_clustering(z, mu, temperature=0.0)
    with pytest.raises(ValueError, match="assign_from"):
        online_clustering(z, mu, assign_from="both")
