"""HeadTailAdversary (S4Rec Eq. 17): plain cross-entropy forward, reversed gradient to z."""

from __future__ import annotations

import copy
import math

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from strategies import float_tensors, long_tensors

import s4rec_components.adversary as adversary_module
import s4rec_components.gradient_reversal as grl_module
from s4rec_components import AdversaryOutput, HeadTailAdversary, set_validate_args
from s4rec_components.adversary import head_tail_adversarial_loss

scales = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)


@st.composite
def adversary_cases(draw, max_b=12, max_d=8, max_c=4):
    """(adversary in float64, z, labels, scale)."""
    b = draw(st.integers(1, max_b))
    d = draw(st.integers(1, max_d))
    c = draw(st.integers(2, max_c))
    scale = draw(scales)
    adversary = HeadTailAdversary(hidden_size=d, num_classes=c, scale=scale).double()
    with torch.no_grad():
        adversary.classifier.weight.copy_(draw(float_tensors((c, d), low=-1.0, high=1.0)))
        adversary.classifier.bias.copy_(draw(float_tensors((c,), low=-1.0, high=1.0)))
    z = draw(float_tensors((b, d)))
    labels = draw(long_tensors((b,), 0, c - 1))
    return adversary, z, labels, scale


def plain_copy(adversary):
    """The same classifier without gradient reversal."""
    return copy.deepcopy(adversary.classifier)


def ref_cross_entropy(logits, labels):
    """Eq. 17 by loops: mean over u of -c_hat[c] + log sum_i exp c_hat[i]."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist()):
        total += -row[label] + math.log(sum(math.exp(v) for v in row))
    return total / len(labels)


@given(case=adversary_cases())
def test_forward_is_plain_linear_cross_entropy(case):
    adversary, z, labels, _ = case
    out = adversary(z, labels)
    assert isinstance(out, AdversaryOutput)
    expected_logits = z @ adversary.classifier.weight.T + adversary.classifier.bias
    torch.testing.assert_close(out.logits, expected_logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(expected_logits, labels))
    assert out.loss.ndim == 0
    assert math.isclose(out.loss.item(), ref_cross_entropy(expected_logits, labels), rel_tol=1e-9)


@given(case=adversary_cases())
def test_classifier_gets_the_plain_gradient_and_z_the_reversed_one(case):
    adversary, z, labels, scale = case
    plain = plain_copy(adversary)
    z_adv = z.clone().requires_grad_(True)
    z_plain = z.clone().requires_grad_(True)
    adversary(z_adv, labels).loss.backward()
    F.cross_entropy(plain(z_plain), labels).backward()
    torch.testing.assert_close(adversary.classifier.weight.grad, plain.weight.grad)
    torch.testing.assert_close(adversary.classifier.bias.grad, plain.bias.grad)
    torch.testing.assert_close(z_adv.grad, -scale * z_plain.grad)


def test_set_scale_changes_the_reversed_gradient_and_is_saved():
    torch.manual_seed(0)
    adversary = HeadTailAdversary(hidden_size=5)
    assert adversary.scale == 1.0
    z = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    plain = plain_copy(adversary)
    z_plain = z.clone().requires_grad_(True)
    F.cross_entropy(plain(z_plain), labels).backward()
    for value in (0.0, 0.3, torch.tensor(2.0)):
        adversary.set_scale(value)
        assert adversary.scale == pytest.approx(float(value))
        z_adv = z.clone().requires_grad_(True)
        adversary(z_adv, labels).loss.backward()
        torch.testing.assert_close(z_adv.grad, -float(value) * z_plain.grad)
    assert float(adversary.state_dict()["reversal.scale"]) == 2.0


def test_classifier_descends_while_the_encoder_ascends():
    """One SGD step on the summed loss lowers L_Adv via the classifier and raises it via z."""
    torch.manual_seed(0)
    adversary = HeadTailAdversary(hidden_size=4)
    z = torch.randn(32, 4, requires_grad=True)
    labels = (z[:, 0] > 0).long()  # learnable from z
    before = adversary(z, labels).loss
    before.backward()
    lr = 0.05
    with torch.no_grad():
        moved = copy.deepcopy(adversary)
        for param, trained in zip(moved.classifier.parameters(), adversary.classifier.parameters()):
            param -= lr * trained.grad
        after_classifier_step = moved(z, labels).loss
        after_encoder_step = adversary(z - lr * z.grad, labels).loss
    assert after_classifier_step < before
    assert after_encoder_step > before


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    torch.manual_seed(0)
    adversary = HeadTailAdversary(hidden_size=4).to(dtype)
    z = torch.randn(3, 4).to(dtype).requires_grad_(True)
    labels = torch.tensor([0, 1, 0])
    out = adversary(z, labels)
    assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.float32
    reference = adversary.float()(z.detach().float(), labels)
    torch.testing.assert_close(out.loss, reference.loss)
    out.loss.backward()
    assert z.grad.dtype == dtype and bool(torch.isfinite(z.grad).all())


@pytest.mark.parametrize(
    ("z_dtype", "module_dtype", "expected"),
    [
        (torch.float16, torch.float32, torch.float32),
        (torch.float64, torch.float32, torch.float64),
        (torch.float32, torch.float64, torch.float64),
        (torch.bfloat16, torch.float16, torch.float32),
    ],
)
def test_mixed_dtypes_are_promoted(z_dtype, module_dtype, expected):
    """Issue 9: HeadTailAdversary(16)(z.half(), labels) used to raise "mat1 and mat2 ..."."""
    torch.manual_seed(0)
    adversary = HeadTailAdversary(16).to(module_dtype)
    z = torch.randn(5, 16)
    labels = torch.tensor([0, 1, 1, 0, 1])
    out = adversary(z.to(z_dtype), labels)
    assert out.loss.dtype == expected and out.logits.dtype == expected
    weight = adversary.classifier.weight.to(expected)
    bias = adversary.classifier.bias.to(expected)
    logits = z.to(z_dtype).to(expected) @ weight.T + bias
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, labels))


def test_function_matches_module_and_accepts_no_bias():
    torch.manual_seed(0)
    adversary = HeadTailAdversary(hidden_size=3, num_classes=3, scale=0.7)
    z, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 2])
    out = head_tail_adversarial_loss(
        z, labels, adversary.classifier.weight, adversary.classifier.bias, scale=0.7
    )
    for got, want in zip(out, adversary(z, labels)):
        torch.testing.assert_close(got, want)
    weight = torch.randn(3, 3)
    out = head_tail_adversarial_loss(z, labels, weight)
    torch.testing.assert_close(out.loss, F.cross_entropy(z @ weight.T, labels))


def test_properties():
    adversary = HeadTailAdversary(hidden_size=7, num_classes=3, scale=0.5)
    assert (adversary.hidden_size, adversary.num_classes, adversary.scale) == (7, 3, 0.5)
    assert set(adversary.state_dict()) == {"reversal.scale", "classifier.weight", "classifier.bias"}


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(hidden_size=0), ValueError, "hidden_size must be >= 1"),
        (dict(hidden_size=4.0), TypeError, "hidden_size must be an int"),
        (dict(hidden_size=4, num_classes=1), ValueError, "num_classes must be >= 2"),
        (dict(hidden_size=4, num_classes=True), TypeError, "num_classes must be an int"),
        (dict(hidden_size=4, scale=float("inf")), ValueError, "scale must be finite"),
        (dict(hidden_size=4, scale="1"), TypeError, "scale must be a real number"),
        (dict(hidden_size=4, scale=True), TypeError, "scale must be a real number"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        HeadTailAdversary(**kwargs)


def test_forward_rejects_bad_inputs():
    adversary = HeadTailAdversary(hidden_size=4)
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\], got values in \[0, 2\]"):
        adversary(z, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        adversary(z, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match="z and labels disagree"):
        adversary(z, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        adversary(z, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        adversary(z, torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match=r"labels must have shape \(b,\)"):
        adversary(z, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        adversary(z, [0, 1, 1])
    with pytest.raises(ValueError, match=r"hidden_size = 4, got shape \(3, 5\)"):
        adversary(torch.randn(3, 5), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"z must have shape \(b, d\)"):
        adversary(torch.randn(4), torch.tensor([0]))
    with pytest.raises(TypeError, match="z must be a floating-point"):
        adversary(torch.ones(3, 4, dtype=torch.long), torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        adversary([[0.0] * 4], torch.tensor([0]))
    with pytest.raises(ValueError, match="must not be empty"):
        adversary(torch.randn(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(TypeError, match="scale must be a real number"):
        adversary.set_scale("0.5")
    with pytest.raises(ValueError, match="scale must be finite"):
        adversary.set_scale(float("nan"))


def test_function_rejects_bad_classifier_tensors():
    z, labels = torch.randn(3, 4), torch.tensor([0, 1, 1])
    with pytest.raises(TypeError, match="weight must be a floating-point"):
        head_tail_adversarial_loss(z, labels, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="weight and bias disagree"):
        head_tail_adversarial_loss(z, labels, torch.ones(2, 4), torch.ones(3))
    with pytest.raises(ValueError, match="scale must be finite"):
        head_tail_adversarial_loss(z, labels, torch.ones(2, 4), scale=float("nan"))
    with pytest.raises(TypeError, match="positional"):
        head_tail_adversarial_loss(z, labels, torch.ones(2, 4), None, 1.0)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        HeadTailAdversary(4, 2, 1.0)  # type: ignore[misc]


def test_label_range_is_a_value_check_behind_the_switch():
    from test_contrastive import count_host_reads

    adversary = HeadTailAdversary(hidden_size=4)
    z, labels = torch.randn(3, 4), torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match="labels"):
        adversary(z, torch.tensor([0, 1, 2]))  # 2 classes: out of range, refused with the checks on
    with count_host_reads() as on:
        adversary(z, labels)
    assert on, "with the checks on, the range check reads the labels"
    set_validate_args(False)
    try:
        with count_host_reads() as off:
            adversary(z, labels)  # the range check is skipped: nothing read back
        with pytest.raises(TypeError, match="labels must be an integer"):  # structural: kept
            adversary(z, labels.float())
    finally:
        set_validate_args(True)
    assert off == []


def test_forward_validates_once_and_never_the_scale(monkeypatch):
    """forward -> one input check, no scale check, no call of the public grad_reverse."""
    calls = {"inputs": 0, "scale": 0, "grad_reverse": 0}
    check_inputs = adversary_module._check_inputs

    def count_inputs(*args):
        calls["inputs"] += 1
        return check_inputs(*args)

    def count_scale(value):
        calls["scale"] += 1
        return value

    def count_grad_reverse(*args, **kwargs):
        calls["grad_reverse"] += 1
        raise AssertionError("the public grad_reverse must not be called by forward")

    monkeypatch.setattr(adversary_module, "_check_inputs", count_inputs)
    monkeypatch.setattr(adversary_module, "_check_scale", count_scale)
    monkeypatch.setattr(grl_module, "_check_scale", count_scale)
    monkeypatch.setattr(grl_module, "grad_reverse", count_grad_reverse)
    adversary = HeadTailAdversary(hidden_size=4)
    calls["scale"] = 0  # the constructor's one check
    z = torch.randn(3, 4, requires_grad=True)
    adversary(z, torch.tensor([0, 1, 1])).loss.backward()
    assert calls == {"inputs": 1, "scale": 0, "grad_reverse": 0}


float_dtypes = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])


@st.composite
def mixed_dtype_cases(draw):
    b, d = draw(st.integers(1, 8)), draw(st.integers(1, 6))
    z = draw(float_tensors((b, d), low=-100.0, high=100.0)).to(draw(float_dtypes))
    labels = draw(long_tensors((b,), 0, 1))
    return z, labels, draw(float_dtypes)


@given(case=mixed_dtype_cases())
def test_any_dtype_pair_is_promoted_and_finite(case):
    z, labels, module_dtype = case
    torch.manual_seed(0)
    adversary = HeadTailAdversary(z.shape[1]).to(module_dtype)
    expected = torch.promote_types(torch.promote_types(z.dtype, module_dtype), torch.float32)
    z = z.clone().requires_grad_(True)
    out = adversary(z, labels)
    assert out.loss.dtype == out.logits.dtype == expected
    assert bool(torch.isfinite(out.loss))
    out.loss.backward()
    assert z.grad.dtype == z.dtype
