"""Tests for ``s4rec_components.distillation``: Eq. 15-16 against a loop reference, laws, errors."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given
from strategies import (
    batch_sizes,
    float_tensors,
    hidden_sizes,
    num_prototypes,
    seeds,
    temperatures,
)

from s4rec_components import PrototypeDistillation, prototype_distillation

reductions = st.sampled_from(["mean", "sum", "none"])
# float64 KL of nearly equal distributions may round a hair below 0.
ROUNDING = 1e-12


@st.composite
def problems(draw):
    """``(student (b, d), prototypes (k, d), assignments (b,))`` in float64."""
    b, d, k = draw(batch_sizes), draw(hidden_sizes), draw(num_prototypes)
    student = draw(float_tensors((b, d)))
    prototypes = draw(float_tensors((k, d)))
    g = torch.Generator().manual_seed(draw(seeds))
    return student, prototypes, torch.randint(0, k, (b,), generator=g)


def reference(student, prototypes, assignments, temperature) -> torch.Tensor:
    """``(b,)`` KL(e_t || e_s) per sample, transcribed from Eq. 15-16 with Python loops."""
    b, d = student.shape
    out = torch.zeros(b, dtype=torch.float64)
    for u in range(b):
        teacher = [float(x) / temperature for x in prototypes[int(assignments[u])]]
        own = [float(x) / temperature for x in student[u]]
        t_norm = math.fsum(math.exp(x - max(teacher)) for x in teacher)
        s_norm = math.fsum(math.exp(x - max(own)) for x in own)
        e_t = [math.exp(x - max(teacher)) / t_norm for x in teacher]
        e_s = [math.exp(x - max(own)) / s_norm for x in own]
        out[u] = math.fsum(e_t[i] * math.log(e_t[i] / e_s[i]) for i in range(d))
    return out


# ----------------------------------------------------------------------------- reference, laws


@given(problem=problems(), temperature=temperatures)
def test_equals_loop_reference(problem, temperature):
    student, prototypes, h = problem
    expected = reference(student, prototypes, h, temperature)
    none = prototype_distillation(student, prototypes, h, temperature, reduction="none")
    torch.testing.assert_close(none, expected)
    torch.testing.assert_close(
        prototype_distillation(student, prototypes, h, temperature), expected.mean()
    )
    torch.testing.assert_close(
        prototype_distillation(student, prototypes, h, temperature, reduction="sum"),
        expected.sum(),
    )


@given(problem=problems(), temperature=temperatures)
def test_non_negative(problem, temperature):
    losses = prototype_distillation(*problem, temperature=temperature, reduction="none")
    assert bool((losses >= -ROUNDING).all())


@given(problem=problems(), temperature=temperatures)
def test_zero_when_student_is_its_teacher(problem, temperature):
    _, prototypes, h = problem
    student = prototypes[h].clone().requires_grad_(True)
    losses = prototype_distillation(student, prototypes, h, temperature, reduction="none")
    torch.testing.assert_close(losses, torch.zeros_like(losses), atol=ROUNDING, rtol=0.0)
    losses.sum().backward()
    torch.testing.assert_close(student.grad, torch.zeros_like(student), atol=1e-10, rtol=0.0)


@given(problem=problems(), seed=seeds, temperature=temperatures)
def test_invariant_to_per_row_constants(problem, seed, temperature):
    """softmax(x + c) = softmax(x): shifting a student row or a prototype changes nothing."""
    student, prototypes, h = problem
    g = torch.Generator().manual_seed(seed)
    student_shift = torch.randn(student.shape[0], 1, generator=g, dtype=student.dtype) * 10
    prototype_shift = torch.randn(prototypes.shape[0], 1, generator=g, dtype=student.dtype) * 10
    torch.testing.assert_close(
        prototype_distillation(student + student_shift, prototypes + prototype_shift, h,
                               temperature, reduction="none"),
        prototype_distillation(student, prototypes, h, temperature, reduction="none"),
    )


@given(problem=problems(), scale=st.floats(min_value=0.1, max_value=10.0), temperature=temperatures)
def test_scaling_trades_against_temperature(problem, scale, temperature):
    student, prototypes, h = problem
    torch.testing.assert_close(
        prototype_distillation(student * scale, prototypes * scale, h, temperature * scale),
        prototype_distillation(student, prototypes, h, temperature),
    )


def test_unused_prototypes_do_not_matter():
    g = torch.Generator().manual_seed(5)
    student, prototypes = torch.randn(4, 6, generator=g), torch.randn(3, 6, generator=g)
    h = torch.tensor([0, 2, 2, 0])
    changed = prototypes.clone()
    changed[1] = 100.0
    torch.testing.assert_close(
        prototype_distillation(student, changed, h), prototype_distillation(student, prototypes, h)
    )


def test_closed_form_two_features():
    """d = 2, temperature 1: teacher (0, 0) is uniform, student (log 3, 0) gives (3/4, 1/4)."""
    student = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    prototypes = torch.zeros(1, 2, dtype=torch.float64)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    loss = prototype_distillation(student, prototypes, torch.tensor([0]))
    assert float(loss) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- autograd, dtype


def test_teacher_detached_by_default():
    g = torch.Generator().manual_seed(6)
    student = torch.randn(5, 4, generator=g, requires_grad=True)
    prototypes = torch.randn(3, 4, generator=g, requires_grad=True)
    h = torch.tensor([0, 1, 2, 1, 0])
    prototype_distillation(student, prototypes, h).backward()
    assert prototypes.grad is None
    assert student.grad is not None and bool(student.grad.abs().sum() > 0)


def test_teacher_gets_gradient_when_not_detached():
    g = torch.Generator().manual_seed(7)
    student = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    prototypes = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    h = torch.tensor([0, 1, 0, 1, 0])
    PrototypeDistillation(detach_teacher=False)(student, prototypes, h).backward()
    assert prototypes.grad is not None and bool(torch.isfinite(prototypes.grad).all())
    assert bool(prototypes.grad[:2].abs().sum() > 0)
    torch.testing.assert_close(prototypes.grad[2], torch.zeros(4, dtype=torch.float64))
    assert torch.autograd.gradcheck(
        lambda s, m: prototype_distillation(s, m, h, 0.7, detach_teacher=False),
        (student.detach().requires_grad_(True), prototypes.detach().requires_grad_(True)),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    g = torch.Generator().manual_seed(8)
    student, prototypes = torch.randn(6, 16, generator=g) * 20, torch.randn(4, 16, generator=g) * 20
    h = torch.tensor([0, 1, 2, 3, 0, 1])
    low = prototype_distillation(student.to(dtype), prototypes.to(dtype), h, temperature=0.05)
    assert low.dtype == dtype and bool(torch.isfinite(low))
    full = prototype_distillation(
        student.to(dtype).float(), prototypes.to(dtype).float(), h, temperature=0.05
    )
    torch.testing.assert_close(low.float(), full, rtol=1e-2, atol=1e-2)


@given(problem=problems(), temperature=temperatures, reduction=reductions,
       detach=st.booleans())
def test_module_equals_function(problem, temperature, reduction, detach):
    module = PrototypeDistillation(temperature, detach_teacher=detach, reduction=reduction)
    torch.testing.assert_close(
        module(*problem),
        prototype_distillation(*problem, temperature, detach_teacher=detach, reduction=reduction),
    )
    assert f"reduction={reduction!r}" in repr(module)


# ----------------------------------------------------------------------------- errors

S = torch.randn(4, 3)
MU = torch.randn(2, 3)
H = torch.tensor([0, 1, 1, 0])
OUT_OF_RANGE = r"assignments must lie in \[0, 1\]"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"student": S.tolist()}, TypeError, "student must be a torch.Tensor"),
        ({"student": torch.randn(12)}, ValueError, r"student must have shape \(b, d\)"),
        ({"student": torch.ones(4, 3, dtype=torch.long)}, TypeError, "student must be a floating"),
        ({"student": S[:0], "assignments": H[:0]}, ValueError, "student must not be empty"),
        ({"prototypes": None}, TypeError, "prototypes must be a torch.Tensor"),
        ({"prototypes": torch.randn(2, 4)}, ValueError, "student and prototypes disagree"),
        ({"prototypes": torch.randn(2, 3, 1)}, ValueError, r"prototypes must have shape \(k, d\)"),
        ({"prototypes": torch.randn(0, 3)}, ValueError, "prototypes must not be empty"),
        ({"prototypes": MU.double()}, TypeError, "prototypes must share the dtype"),
        ({"assignments": torch.tensor([0, 1, 2, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": torch.tensor([0, -1, 1, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": H.float()}, TypeError, "assignments must be an integer"),
        ({"assignments": H[:3]}, ValueError, "student and assignments disagree"),
        ({"assignments": H.view(2, 2)}, ValueError, r"assignments must have shape \(b,\)"),
        ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
        ({"temperature": float("nan")}, ValueError, "temperature must be > 0"),
        ({"temperature": float("inf")}, ValueError, "temperature must be finite"),
        ({"temperature": "1"}, TypeError, "temperature must be a float"),
        ({"detach_teacher": 1}, TypeError, "detach_teacher must be a bool"),
        ({"reduction": "batchmean"}, ValueError, "reduction must be one of"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    arguments = {"student": S, "prototypes": MU, "assignments": H}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        prototype_distillation(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": -0.5}, ValueError, "temperature must be > 0"),
        ({"temperature": True}, TypeError, "temperature must be a float"),
        ({"detach_teacher": "yes"}, TypeError, "detach_teacher must be a bool"),
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
    ],
)
def test_module_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        PrototypeDistillation(**kwargs)
