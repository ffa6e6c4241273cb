"""Tests for ``s4rec_components.gradient_reversal``: identity forward, reversed grad, schedule."""

from __future__ import annotations

import io
import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from strategies import examples, float_tensors, matrices

import s4rec_components.gradient_reversal as grl_module
from s4rec_components import GradientReversal, dann_schedule, grad_reverse, set_validate_args

scales = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False)
nonzero_scales = scales.filter(lambda s: abs(s) > 1e-2)
progresses = st.floats(min_value=0.0, max_value=1.0)
gammas = st.floats(min_value=0.1, max_value=50.0)


@st.composite
def with_upstream(draw):
    """``(x, upstream)``: a ``(b, d)`` float64 tensor and a gradient of the same shape."""
    x = draw(matrices())
    return x, draw(float_tensors(tuple(x.shape)))


@st.composite
def with_weight(draw):
    """``(x, weight)``: a ``(b, d)`` input and a ``(3, d)`` weight of a nonlinear map."""
    x = draw(matrices())
    return x, draw(float_tensors((3, x.shape[1])))


# ----------------------------------------------------------------------------- grad_reverse


@given(x=matrices(), scale=scales)
def test_forward_is_identity(x, scale):
    y = grad_reverse(x, scale=scale)
    assert torch.equal(y, x)
    assert y.dtype == x.dtype and y.shape == x.shape


@given(case=with_upstream(), scale=scales, as_tensor=st.booleans())
def test_backward_is_minus_scale_times_upstream(case, scale, as_tensor):
    x, upstream = case
    x = x.clone().requires_grad_(True)
    lam = torch.tensor(scale, dtype=torch.float64) if as_tensor else scale
    grad_reverse(x, scale=lam).backward(upstream)
    torch.testing.assert_close(x.grad, -scale * upstream, rtol=1e-12, atol=0.0)


@settings(max_examples=examples(10))
@given(case=with_weight(), scale=nonzero_scales)
def test_jacobian_is_minus_scale_times_the_plain_jacobian(case, scale):
    """Behind a GRL, the analytic Jacobian of a nonlinear map is -scale times its own."""
    x, weight = case

    def plain(v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(v @ weight.T)

    reversed_jac = torch.autograd.functional.jacobian(lambda v: plain(grad_reverse(v, scale=scale)), x)
    plain_jac = torch.autograd.functional.jacobian(plain, x)
    torch.testing.assert_close(reversed_jac, -scale * plain_jac)


def test_gradcheck_where_the_backward_is_the_true_derivative():
    """gradcheck compares with finite differences of the (identity) forward, so we check
    compositions whose reversed backward must equal the true derivative: scale -1, and two
    layers whose factors -s and -1/s cancel."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: torch.sin(grad_reverse(v, scale=-1.0) @ weight), (x,))
    assert torch.autograd.gradcheck(
        lambda v: torch.sin(grad_reverse(grad_reverse(v, scale=2.5), scale=1 / 2.5) @ weight), (x,)
    )
    assert torch.autograd.gradgradcheck(
        lambda v: torch.sin(grad_reverse(v, scale=-1.0) @ weight), (x,)
    )
    # And the plain reversal does differ from the finite differences: gradcheck must notice.
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(lambda v: torch.sin(grad_reverse(v, scale=1.0) @ weight), (x,))


def test_zero_scale_blocks_gradient():
    x = torch.randn(5, requires_grad=True)
    (grad_reverse(x, scale=0.0) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.zeros(5))


def test_no_gradient_to_tensor_scale():
    x = torch.randn(3, requires_grad=True)
    scale = torch.tensor(0.7, requires_grad=True)
    grad_reverse(x, scale=scale).sum().backward()
    assert scale.grad is None
    torch.testing.assert_close(x.grad, torch.full((3,), -0.7))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_gradient_keeps_dtype(dtype):
    x = torch.ones(4, dtype=dtype, requires_grad=True)
    grad_reverse(x, scale=torch.tensor(0.5)).sum().backward()
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad, torch.full((4,), -0.5, dtype=dtype))


# ----------------------------------------------------------------------------- module


def test_module_in_an_adversarial_pair():
    """The classifier sees the usual gradient; the encoder the reversed, scaled one."""
    torch.manual_seed(0)
    encoder, classifier = torch.nn.Linear(6, 4), torch.nn.Linear(4, 2)
    x, target = torch.randn(8, 6), torch.randint(0, 2, (8,))
    grl = GradientReversal(scale=0.3)

    def grads(use_grl: bool) -> tuple[torch.Tensor, torch.Tensor]:
        encoder.zero_grad()
        classifier.zero_grad()
        h = encoder(x)
        logits = classifier(grl(h) if use_grl else h)
        torch.nn.functional.cross_entropy(logits, target).backward()
        return encoder.weight.grad.clone(), classifier.weight.grad.clone()

    enc_plain, cls_plain = grads(False)
    enc_rev, cls_rev = grads(True)
    torch.testing.assert_close(cls_rev, cls_plain)
    torch.testing.assert_close(enc_rev, -0.3 * enc_plain)


def test_scale_is_a_float32_buffer_in_state_dict():
    grl = GradientReversal(scale=0.25)
    assert list(grl.state_dict()) == ["scale"]
    assert grl.scale.dtype == torch.float32 and grl.scale.ndim == 0
    assert float(grl.scale) == 0.25
    assert list(grl.parameters()) == []
    assert "scale=0.25" in repr(grl)


@given(scale=scales, new=scales)
def test_set_scale_changes_gradient_and_round_trips(scale, new):
    grl = GradientReversal(scale=scale)
    grl.set_scale(new)
    x = torch.ones(3, requires_grad=True)
    grl(x).sum().backward()
    expected = -torch.tensor(new, dtype=torch.float32)
    torch.testing.assert_close(x.grad, expected.expand(3))

    buffer = io.BytesIO()
    torch.save(grl.state_dict(), buffer)
    buffer.seek(0)
    restored = GradientReversal()
    restored.load_state_dict(torch.load(buffer))
    assert torch.equal(restored.scale, grl.scale)


def test_set_scale_accepts_tensor_and_keeps_buffer_identity():
    grl = GradientReversal()
    buffer = grl.scale
    grl.set_scale(torch.tensor(0.5, dtype=torch.float64))
    assert grl.scale is buffer
    assert grl.scale.dtype == torch.float32 and float(grl.scale) == 0.5
    grl.set_scale(dann_schedule(0.0))
    assert float(grl.scale) == 0.0


# ----------------------------------------------------------------------------- schedule


@given(progress=progresses, gamma=gammas)
def test_schedule_equals_formula(progress, gamma):
    expected = 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
    assert dann_schedule(progress, gamma=gamma) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert 0.0 <= dann_schedule(progress, gamma=gamma) <= 1.0


def test_schedule_endpoints():
    assert dann_schedule(0.0) == 0.0
    assert dann_schedule(1.0) == pytest.approx(math.tanh(5.0))
    assert dann_schedule(1.0) > 0.9999
    assert dann_schedule(1.0, gamma=1000.0) == 1.0


@given(p=progresses, q=progresses, gamma=gammas)
def test_schedule_monotone(p, q, gamma):
    low, high = sorted((p, q))
    assert dann_schedule(low, gamma=gamma) <= dann_schedule(high, gamma=gamma)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("x", "scale", "error", "match"),
    [
        ([1.0, 2.0], 1.0, TypeError, "x must be a torch.Tensor"),
        (torch.ones(3, dtype=torch.long), 1.0, TypeError, "x must be a floating-point"),
        (torch.ones(3), "1.0", TypeError, "scale must be a real number, got str"),
        (torch.ones(3), True, TypeError, "scale must be a real number, got bool"),
        (torch.ones(3), None, TypeError, "scale must be a real number"),
        (torch.ones(3), torch.ones(1), ValueError, r"scale must have shape \(\)"),
        (torch.ones(3), torch.tensor(2), TypeError, "scale must be a floating-point"),
        (torch.ones(3), float("nan"), ValueError, "scale must be finite"),
        (torch.ones(3), float("inf"), ValueError, "scale must be finite"),
        (torch.ones(3), torch.tensor(float("inf")), ValueError, "scale must be finite"),
    ],
)
def test_grad_reverse_bad_inputs(x, scale, error, match):
    with pytest.raises(error, match=match):
        grad_reverse(x, scale=scale)


@pytest.mark.parametrize(
    ("scale", "error", "match"),
    [
        (float("nan"), ValueError, "scale must be finite"),
        ("big", TypeError, "scale must be a real number"),
        (False, TypeError, "scale must be a real number"),
        (torch.ones(2), ValueError, r"scale must have shape \(\)"),
    ],
)
def test_module_bad_scale(scale, error, match):
    with pytest.raises(error, match=match):
        GradientReversal(scale=scale)
    grl = GradientReversal()
    with pytest.raises(error, match=match):
        grl.set_scale(scale)
    assert float(grl.scale) == 1.0  # unchanged after a rejected value


@pytest.mark.parametrize(
    ("progress", "gamma", "error", "match"),
    [
        (-0.1, 10.0, ValueError, r"progress must lie in \[0, 1\]"),
        (1.5, 10.0, ValueError, r"progress must lie in \[0, 1\]"),
        (float("nan"), 10.0, ValueError, "progress must be finite"),
        ("0.5", 10.0, TypeError, "progress must be a real number"),
        (True, 10.0, TypeError, "progress must be a real number"),
        (0.5, 0.0, ValueError, r"gamma must lie in \(0, inf\)"),
        (0.5, -1.0, ValueError, r"gamma must lie in \(0, inf\)"),
        (0.5, float("inf"), ValueError, "gamma must be finite"),
        (0.5, None, TypeError, "gamma must be a real number"),
    ],
)
def test_schedule_bad_inputs(progress, gamma, error, match):
    with pytest.raises(error, match=match):
        dann_schedule(progress, gamma=gamma)


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        grad_reverse(torch.ones(2), 0.5)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        dann_schedule(0.5, 10.0)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        GradientReversal(0.5)  # type: ignore[misc]


# ----------------------------------------------------------------------------- validation


def test_forward_never_checks_or_reads_the_scale(monkeypatch):
    """set_scale validates once; forward neither re-checks nor reads the buffer."""
    grl = GradientReversal(scale=0.5)
    calls = []
    monkeypatch.setattr(grl_module, "_check_scale", lambda value: calls.append(value) or value)
    x = torch.ones(3, requires_grad=True)
    grl(x).sum().backward()
    assert calls == []
    grl.set_scale(0.25)
    assert len(calls) == 1


def test_tensor_scale_finiteness_is_a_value_check():
    x = torch.ones(2, requires_grad=True)
    set_validate_args(False)
    try:
        grad_reverse(x, scale=torch.tensor(float("inf"))).sum().backward()
    finally:
        set_validate_args(True)
    assert bool(torch.isinf(x.grad).all())
    with pytest.raises(ValueError, match="scale must be finite"):
        grad_reverse(x, scale=torch.tensor(float("nan")))
    # A float scale is a hyper-parameter: always checked.
    set_validate_args(False)
    try:
        with pytest.raises(ValueError, match="scale must be finite"):
            grad_reverse(x, scale=float("inf"))
    finally:
        set_validate_args(True)
