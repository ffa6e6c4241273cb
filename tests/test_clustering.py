"""OnlineIntentClustering (S4Rec Eq. 7-11): reference loss, laws, freezing, gradients, errors."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given, settings
from strategies import examples, float_tensors, permutations, temperatures

import s4rec_components.clustering as clustering_module
import s4rec_components.sinkhorn as sinkhorn_module
from s4rec_components import OnlineIntentClustering, set_validate_args, sinkhorn_knopp
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


@settings(max_examples=examples(30))
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
    out = online_clustering(
        z, prototypes, temperature=temperature, epsilon=epsilon, num_iters=iters,
        normalize=normalize,
    )
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
    expected = online_clustering(
        z, module.prototypes, temperature=0.2, epsilon=0.05, num_iters=3, normalize=True
    )
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want)
    loss, _, _ = ref_loss(z, module.prototypes.detach(), 0.2, 0.05, 3, True)
    assert abs(out.loss.item() - loss) < 1e-4


@st.composite
def zero_z_cases(draw):
    b, k, d = draw(st.integers(1, 10)), draw(st.integers(1, 8)), draw(st.integers(1, 6))
    return torch.zeros(b, d, dtype=torch.float64), draw(float_tensors((k, d)))


@given(case=zero_z_cases(), temperature=temperatures, normalize=st.booleans())
def test_equal_scores_give_uniform_p_q_and_loss_log_k(case, temperature, normalize):
    """All-zero z scores 0 against every prototype, with or without normalisation."""
    z, prototypes = case  # all scores 0
    b, k = z.shape[0], prototypes.shape[0]
    out = online_clustering(z, prototypes, temperature=temperature, normalize=normalize)
    uniform = torch.full((b, k), 1.0 / k, dtype=torch.float64)
    torch.testing.assert_close(out.probs, uniform)
    torch.testing.assert_close(out.targets, uniform)
    assert math.isclose(out.loss.item(), math.log(k), rel_tol=1e-6, abs_tol=1e-7)


def test_targets_are_sinkhorn_of_the_scores():
    torch.manual_seed(1)
    z, prototypes = torch.randn(16, 4), torch.randn(5, 4)
    out = online_clustering(z, prototypes, epsilon=0.1, num_iters=5)
    scores = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(
        prototypes, dim=1
    ).T
    torch.testing.assert_close(out.targets, sinkhorn_knopp(scores, num_iters=5, epsilon=0.1))
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
    out = online_clustering(z, prototypes, temperature=temperature, assign_from=assign_from)
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


@st.composite
def permuted_cases(draw):
    z, prototypes = draw(clustering_cases(max_b=10))
    return z, prototypes, draw(permutations(z.shape[0]))


@st.composite
def scaled_cases(draw):
    z, prototypes = draw(clustering_cases())
    return z, prototypes, draw(float_tensors((z.shape[0], 1), low=0.5, high=4.5))


@given(case=permuted_cases())
def test_permuting_the_batch_permutes_the_outputs(case):
    z, prototypes, perm = case
    out = online_clustering(z, prototypes)
    permuted = online_clustering(z[perm], prototypes)
    torch.testing.assert_close(permuted.targets, out.targets[perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted.probs, out.probs[perm])
    torch.testing.assert_close(permuted.loss, out.loss, atol=1e-5, rtol=1e-5)
    top2 = out.targets.topk(min(2, out.targets.shape[1]), dim=1).values
    clear = (top2[:, 0] - top2[:, -1] > 1e-3) | (top2.shape[1] == 1)
    assert torch.equal(permuted.assignments[clear[perm]], out.assignments[perm][clear[perm]])


@given(case=scaled_cases())
def test_scaling_z_changes_nothing_when_normalized(case):
    z, prototypes, factor = case
    # Rows of norm <= 1e-12 are zero rows by definition; scaling one across that threshold
    # changes it, so the law is stated for rows of visible length.
    assume(nonzero_rows(z))
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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(dtype):
    torch.manual_seed(0)
    module = OnlineIntentClustering(hidden_size=4, num_prototypes=3).to(dtype)
    z = torch.randn(8, 4).to(dtype)
    out = module(z)
    assert out.loss.dtype == torch.float32 and out.probs.dtype == torch.float32
    assert out.targets.dtype == torch.float32 and out.prototypes.dtype == dtype
    assert torch.isfinite(out.loss)
    expected = online_clustering(z.float(), module.prototypes.detach().float())
    torch.testing.assert_close(out.loss, expected.loss)
    torch.testing.assert_close(out.probs, expected.probs)


@pytest.mark.parametrize(
    ("z_dtype", "module_dtype", "expected"),
    [
        (torch.float64, torch.float32, torch.float64),  # issue 9's reproducer
        (torch.float16, torch.float32, torch.float32),
        (torch.float32, torch.float64, torch.float64),
        (torch.bfloat16, torch.float16, torch.float32),
    ],
)
def test_mixed_dtypes_are_promoted(z_dtype, module_dtype, expected):
    torch.manual_seed(0)
    module = OnlineIntentClustering(16, 8).to(module_dtype)
    z = torch.randn(20, 16).to(z_dtype).requires_grad_(True)
    out = module(z)
    assert out.loss.dtype == expected and out.probs.dtype == expected
    assert out.targets.dtype == expected and out.prototypes.dtype == module_dtype
    reference = online_clustering(
        z.detach().to(expected), module.prototypes.detach().to(expected)
    )
    torch.testing.assert_close(out.loss, reference.loss)
    out.loss.backward()
    assert z.grad.dtype == z_dtype and bool(torch.isfinite(z.grad).all())
    assert module.prototypes.grad.dtype == module_dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_zero_rows_are_defined_in_every_dtype(dtype):
    """Mean pooling of an all-padding row gives a zero vector: uniform scores, finite loss."""
    torch.manual_seed(0)
    z = torch.randn(6, 5).to(dtype)
    z[2] = 0.0
    prototypes = torch.randn(4, 5).to(dtype)
    out = online_clustering(z, prototypes)
    assert bool(torch.isfinite(out.loss)) and bool(torch.isfinite(out.probs).all())
    torch.testing.assert_close(
        out.probs[2], torch.full((4,), 0.25, dtype=out.probs.dtype), rtol=0, atol=1e-6
    )
    zero_prototype = prototypes.clone()
    zero_prototype[1] = 0.0
    assert bool(torch.isfinite(online_clustering(z, zero_prototype).loss))
    z_grad = z.clone().requires_grad_(True)
    OnlineIntentClustering(5, 4).to(dtype)(z_grad).loss.backward()
    assert bool(torch.isfinite(z_grad.grad).all())
    assert bool((z_grad.grad[2] == 0).all())  # no direction, no gradient
    assert bool((z_grad.grad[[0, 1, 3, 4, 5]] != 0).any())


# --------------------------------------------------------------------------------------------
# assign
# --------------------------------------------------------------------------------------------


@settings(max_examples=examples(20))
@given(case=clustering_cases(), assign_from=st.sampled_from(["targets", "probs"]))
def test_assign_equals_forward_assignments(case, assign_from):
    z, prototypes = case
    module = OnlineIntentClustering(z.shape[1], prototypes.shape[0], assign_from=assign_from)
    module = module.double()
    with torch.no_grad():
        module.prototypes.copy_(prototypes)
    hard = module.assign(z)
    assert int(module.step) == 0  # assign is not a training step
    assert hard.dtype == torch.long and hard.shape == (z.shape[0],)
    assert not hard.requires_grad
    assert torch.equal(hard, module(z).assignments)


def test_assign_needs_no_grad_and_checks_its_input():
    module = OnlineIntentClustering(4, 3)
    z = torch.randn(5, 4, requires_grad=True)
    hard = module.assign(z)
    assert hard.grad_fn is None and module.prototypes.grad is None
    with pytest.raises(ValueError, match="hidden_size = 4"):
        module.assign(torch.randn(5, 3))
    with pytest.raises(ValueError, match="finite"):
        module.assign(torch.full((2, 4), float("nan")))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_prototypes_are_refused_while_checks_are_on(bad):
    """A diverged run or an edited checkpoint: the argmax would send every row to prototype 0."""
    module = OnlineIntentClustering(4, 3)
    with torch.no_grad():
        module.prototypes[1, 2] = bad
    z = torch.randn(6, 4)
    for call in (module, module.assign):
        with pytest.raises(ValueError, match="prototypes .* must be finite"):
            call(z)
    set_validate_args(False)
    try:
        module.assign(z)  # trusted: nothing is read, nothing raised
    finally:
        set_validate_args(True)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(hidden_size=0), ValueError, "hidden_size must be >= 1"),
        (dict(hidden_size=2.5), TypeError, "hidden_size must be an int"),
        (dict(hidden_size=4, num_prototypes=0), ValueError, "num_prototypes must be >= 1"),
        (dict(hidden_size=True), TypeError, "hidden_size must be an int"),
        (dict(hidden_size=4, num_prototypes=True), TypeError, "num_prototypes must be an int"),
        (dict(hidden_size=4, temperature=0.0), ValueError, r"temperature must lie in \(0, inf\)"),
        (dict(hidden_size=4, temperature=float("inf")), ValueError, "temperature must be finite"),
        (dict(hidden_size=4, temperature=float("nan")), ValueError, "temperature must be finite"),
        (dict(hidden_size=4, temperature="0.1"), TypeError, "temperature must be a real number"),
        (dict(hidden_size=4, temperature=True), TypeError, "temperature must be a real number"),
        (dict(hidden_size=4, epsilon=-1.0), ValueError, r"epsilon must lie in \(0, inf\)"),
        (dict(hidden_size=4, epsilon=float("inf")), ValueError, "epsilon must be finite"),
        (dict(hidden_size=4, num_iters=0), ValueError, "num_iters must be >= 1"),
        (dict(hidden_size=4, num_iters=True), TypeError, "num_iters must be an int"),
        (dict(hidden_size=4, normalize="yes"), TypeError, "normalize must be a bool"),
        (dict(hidden_size=4, distributed=1), TypeError, "distributed must be a bool"),
        (dict(hidden_size=4, freeze_prototypes_steps=True), TypeError, "freeze_prototypes_steps"),
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
    with pytest.raises(ValueError, match=r"temperature must lie in \(0, inf\)"):
        online_clustering(z, mu, temperature=0.0)
    with pytest.raises(ValueError, match="assign_from"):
        online_clustering(z, mu, assign_from="both")
    with pytest.raises(ValueError, match="prototypes must be finite"):
        online_clustering(z, torch.full((2, 4), float("inf")))
    with pytest.raises(TypeError, match="sinkhorn_iters"):
        online_clustering(z, mu, sinkhorn_iters=3)  # renamed to num_iters
    with pytest.raises(TypeError, match="positional"):
        online_clustering(z, mu, 0.1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        OnlineIntentClustering(4, 3, 0.1)  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Validation: once per call, value checks behind the switch, no device reads for `frozen`
# --------------------------------------------------------------------------------------------


def test_forward_validates_once_and_skips_the_public_layers(monkeypatch):
    """forward -> one finiteness check (of z and the prototypes together); not online_clustering,
    not sinkhorn_knopp."""
    calls = {"finite": 0, "hyper": 0}
    checked: list[str] = []
    check_finite, check_hyper = clustering_module._check_finite, clustering_module._check_hyperparameters

    def count_finite(*args):
        calls["finite"] += 1
        checked.append(" + ".join(name.split(" (")[0] for name in [args[1], *(o[1] for o in args[2:])]))
        return check_finite(*args)

    def count_hyper(*args):
        calls["hyper"] += 1
        return check_hyper(*args)

    def refuse(*args, **kwargs):
        raise AssertionError("a public layer was called by forward")

    monkeypatch.setattr(clustering_module, "_check_finite", count_finite)
    monkeypatch.setattr(clustering_module, "_check_hyperparameters", count_hyper)
    monkeypatch.setattr(clustering_module, "online_clustering", refuse)
    monkeypatch.setattr(sinkhorn_module, "_check_scores", refuse)
    monkeypatch.setattr(sinkhorn_module, "_check_hyperparameters", refuse)
    module = OnlineIntentClustering(4, 3)
    module(torch.randn(6, 4)).loss.backward()
    module(torch.randn(6, 4))
    assert calls == {"finite": 2, "hyper": 1} and checked == ["z + the prototypes"] * 2  # one read each


def test_finiteness_is_a_value_check_behind_the_switch():
    module = OnlineIntentClustering(4, 3)
    bad = torch.tensor([[float("nan"), 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    set_validate_args(False)
    try:
        module(bad)  # trusted
        with pytest.raises(ValueError, match="hidden_size = 4"):  # structural: kept
            module(torch.randn(2, 5))
    finally:
        set_validate_args(True)
    with pytest.raises(ValueError, match="z must be finite"):
        module(bad)


def test_frozen_never_reads_the_step_buffer():
    module = OnlineIntentClustering(3, 2, freeze_prototypes_steps=2)

    class Unreadable(torch.Tensor):
        # every Python-level way to read the buffer's value fails (only reached by the bug guarded)
        def _read(self, *args, **kwargs):  # pragma: no cover
            raise AssertionError("frozen read the device")

        __index__ = __int__ = __bool__ = __float__ = item = tolist = _read

    module.step = torch.zeros((), dtype=torch.long).as_subclass(Unreadable)
    assert module.frozen
    module.train()
    module(torch.randn(4, 3))
    module(torch.randn(4, 3))
    assert not module.frozen


def test_frozen_mirror_follows_load_state_dict():
    trained = OnlineIntentClustering(3, 2, freeze_prototypes_steps=3)
    for _ in range(3):
        trained(torch.randn(4, 3))
    assert not trained.frozen
    fresh = OnlineIntentClustering(3, 2, freeze_prototypes_steps=3)
    assert fresh.frozen
    fresh.load_state_dict(trained.state_dict())
    assert not fresh.frozen and int(fresh.step) == 3
    fresh.load_state_dict(OnlineIntentClustering(3, 2).state_dict())
    assert fresh.frozen


@pytest.mark.parametrize("freeze", [0, 2])
def test_training_steps_do_not_recompile_under_torch_compile(freeze):
    """The step counter must not be a guard that changes every step (issue 8: a compiled S4Rec
    step recompiled on each call, 3 s a step on an H200). Only a freeze window may recompile."""
    torch._dynamo.reset()
    try:
        module = OnlineIntentClustering(6, 4, freeze_prototypes_steps=freeze).train()
        compiled = torch.compile(module, backend="eager")  # dynamo's guards only; no code generation
        for _ in range(freeze + 1):  # the freeze window and the first step after it
            compiled(torch.randn(8, 6, requires_grad=True)).loss.backward()
        with torch._dynamo.config.patch(error_on_recompile=True):
            for _ in range(4):
                compiled(torch.randn(8, 6, requires_grad=True)).loss.backward()
        assert int(module.step) == freeze + 5 and not module.frozen
    finally:
        torch._dynamo.reset()  # no compiled state leaks into later tests, pass or fail


# --------------------------------------------------------------------------------------------
# Fuzz: every float dtype pair, zeros and large values (issue 9)
# --------------------------------------------------------------------------------------------

float_dtypes = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])


@st.composite
def mixed_dtype_cases(draw):
    b, k, d = draw(st.integers(1, 8)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    z = draw(float_tensors((b, d), low=-1000.0, high=1000.0)).to(draw(float_dtypes))
    prototypes = draw(float_tensors((k, d), low=-1000.0, high=1000.0)).to(draw(float_dtypes))
    return z, prototypes


@given(case=mixed_dtype_cases(), temperature=st.sampled_from([1e-3, 0.1, 10.0]))
def test_any_dtype_pair_gives_a_finite_loss_in_the_promoted_dtype(case, temperature):
    z, prototypes = case
    expected = torch.promote_types(torch.promote_types(z.dtype, prototypes.dtype), torch.float32)
    z = z.clone().requires_grad_(True)
    out = online_clustering(z, prototypes, temperature=temperature)
    assert out.loss.dtype == out.probs.dtype == out.targets.dtype == expected
    assert bool(torch.isfinite(out.loss)) and bool(torch.isfinite(out.probs).all())
    torch.testing.assert_close(
        out.targets.sum(1), torch.ones(z.shape[0], dtype=expected), atol=1e-4, rtol=0
    )
    out.loss.backward()
    # The gradient is finite wherever it fits z's dtype: computed from a float64 copy of the same
    # inputs, it may exceed float16's range (~65504) for a tiny row at temperature 1e-3, and then
    # rounding it to float16 gives inf, which is the honest value, not a failure of the loss.
    z64 = z.detach().double().requires_grad_(True)
    online_clustering(z64, prototypes.double(), temperature=temperature).loss.backward()
    fits = torch.isfinite(z64.grad.to(z.dtype))
    assert bool(torch.isfinite(z.grad.float())[fits].all())
