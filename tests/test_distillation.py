"""Tests for ``s4rec_components.distillation``: Eq. 15-16 against a loop reference, laws, errors."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import example, given
from strategies import (
    batch_sizes,
    float_tensors,
    hidden_sizes,
    long_tensors,
    num_prototypes,
    temperatures,
)

import s4rec_components.distillation as distillation_module
from s4rec_components import PrototypeDistillation, prototype_distillation, set_validate_args

reductions = st.sampled_from(["mean", "sum", "none"])
# float64 KL of nearly equal distributions may round a hair below 0.
ROUNDING = 1e-12


@st.composite
def problems(draw):
    """``(student (b, d), prototypes (k, d), assignments (b,))`` in float64."""
    b, d, k = draw(batch_sizes), draw(hidden_sizes), draw(num_prototypes)
    student = draw(float_tensors((b, d)))
    prototypes = draw(float_tensors((k, d)))
    return student, prototypes, draw(long_tensors((b,), 0, k - 1))


@st.composite
def problems_with_shifts(draw):
    """A problem plus per-row constants ``(b, 1)`` and ``(k, 1)`` for the shift law."""
    student, prototypes, h = draw(problems())
    student_shift = draw(float_tensors((student.shape[0], 1), low=-30.0, high=30.0))
    prototype_shift = draw(float_tensors((prototypes.shape[0], 1), low=-30.0, high=30.0))
    return (student, prototypes, h), student_shift, prototype_shift


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
    none = prototype_distillation(
        student, prototypes, h, temperature=temperature, reduction="none"
    )
    torch.testing.assert_close(none, expected)
    torch.testing.assert_close(
        prototype_distillation(student, prototypes, h, temperature=temperature), expected.mean()
    )
    torch.testing.assert_close(
        prototype_distillation(student, prototypes, h, temperature=temperature, reduction="sum"),
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
    losses = prototype_distillation(
        student, prototypes, h, temperature=temperature, reduction="none"
    )
    torch.testing.assert_close(losses, torch.zeros_like(losses), atol=ROUNDING, rtol=0.0)
    losses.sum().backward()
    torch.testing.assert_close(student.grad, torch.zeros_like(student), atol=1e-10, rtol=0.0)


@given(case=problems_with_shifts(), temperature=temperatures)
def test_invariant_to_per_row_constants(case, temperature):
    """softmax(x + c) = softmax(x): shifting a student row or a prototype changes nothing."""
    (student, prototypes, h), student_shift, prototype_shift = case
    torch.testing.assert_close(
        prototype_distillation(student + student_shift, prototypes + prototype_shift, h,
                               temperature=temperature, reduction="none"),
        prototype_distillation(student, prototypes, h, temperature=temperature, reduction="none"),
    )


@given(problem=problems(), scale=st.floats(min_value=0.1, max_value=10.0), temperature=temperatures)
def test_scaling_trades_against_temperature(problem, scale, temperature):
    student, prototypes, h = problem
    torch.testing.assert_close(
        prototype_distillation(student * scale, prototypes * scale, h,
                               temperature=temperature * scale),
        prototype_distillation(student, prototypes, h, temperature=temperature),
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
        lambda s, m: prototype_distillation(s, m, h, temperature=0.7, detach_teacher=False),
        (student.detach().requires_grad_(True), prototypes.detach().requires_grad_(True)),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("temperature", [0.05, 1e-3])
def test_half_precision_inputs_give_a_finite_float32_loss(dtype, temperature):
    g = torch.Generator().manual_seed(8)
    student, prototypes = torch.randn(6, 16, generator=g) * 20, torch.randn(4, 16, generator=g) * 20
    h = torch.tensor([0, 1, 2, 3, 0, 1])
    low = prototype_distillation(
        student.to(dtype), prototypes.to(dtype), h, temperature=temperature
    )
    assert low.dtype == torch.float32 and bool(torch.isfinite(low))
    exact = prototype_distillation(
        student.to(dtype).double(), prototypes.to(dtype).double(), h, temperature=temperature
    )
    torch.testing.assert_close(low.double(), exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("student_dtype", "prototype_dtype", "expected"),
    [
        (torch.float16, torch.float32, torch.float32),
        (torch.float32, torch.float64, torch.float64),
        (torch.float64, torch.bfloat16, torch.float64),
        (torch.float64, torch.float64, torch.float64),
        (torch.float32, torch.float32, torch.float32),
    ],
)
def test_loss_dtype_rule_and_mixed_dtypes(student_dtype, prototype_dtype, expected):
    g = torch.Generator().manual_seed(9)
    student, prototypes = torch.randn(5, 6, generator=g), torch.randn(3, 6, generator=g)
    h = torch.tensor([0, 1, 2, 1, 0])
    loss = prototype_distillation(student.to(student_dtype), prototypes.to(prototype_dtype), h)
    assert loss.dtype == expected
    reference = prototype_distillation(
        student.to(student_dtype).double(), prototypes.to(prototype_dtype).double(), h
    )
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)


@given(problem=problems(), temperature=temperatures, reduction=reductions,
       detach=st.booleans())
def test_module_equals_function(problem, temperature, reduction, detach):
    module = PrototypeDistillation(
        temperature=temperature, detach_teacher=detach, reduction=reduction
    )
    torch.testing.assert_close(
        module(*problem),
        prototype_distillation(
            *problem, temperature=temperature, detach_teacher=detach, reduction=reduction
        ),
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
        ({"prototypes": MU.long()}, TypeError, "prototypes must be a floating"),
        ({"assignments": torch.tensor([0, 1, 2, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": torch.tensor([0, -1, 1, 0])}, ValueError, OUT_OF_RANGE),
        ({"assignments": H.float()}, TypeError, "assignments must be an integer"),
        ({"assignments": H[:3]}, ValueError, "student and assignments disagree"),
        ({"assignments": H.view(2, 2)}, ValueError, r"assignments must have shape \(b,\)"),
        ({"temperature": 0.0}, ValueError, r"temperature must lie in \(0, inf\), got 0.0"),
        ({"temperature": float("nan")}, ValueError, "temperature must be finite"),
        ({"temperature": float("inf")}, ValueError, "temperature must be finite"),
        ({"temperature": "1"}, TypeError, "temperature must be a real number"),
        ({"temperature": True}, TypeError, "temperature must be a real number"),
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
        ({"temperature": -0.5}, ValueError, r"temperature must lie in \(0, inf\), got -0.5"),
        ({"temperature": True}, TypeError, "temperature must be a real number"),
        ({"temperature": float("inf")}, ValueError, "temperature must be finite"),
        ({"detach_teacher": "yes"}, TypeError, "detach_teacher must be a bool"),
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
    ],
)
def test_module_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        PrototypeDistillation(**kwargs)


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        prototype_distillation(S, MU, H, 1.0)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        PrototypeDistillation(1.0)  # type: ignore[misc]


def test_assignment_range_is_a_value_check_behind_the_switch():
    from test_contrastive import count_host_reads

    good = torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match="assignments"):
        prototype_distillation(S, MU, torch.tensor([0, 1, 1, MU.shape[0]]))  # out of range: refused
    with count_host_reads() as on:
        prototype_distillation(S, MU, good)
    assert on, "with the checks on, the range check reads the assignments"
    set_validate_args(False)
    try:
        with count_host_reads() as off:
            prototype_distillation(S, MU, good)  # the range check is skipped: nothing read back
        with pytest.raises(TypeError, match="assignments must be an integer"):  # structural
            prototype_distillation(S, MU, good.float())
    finally:
        set_validate_args(True)
    assert off == []


def test_module_checks_hyperparameters_once(monkeypatch):
    calls = {"hyper": 0, "inputs": 0}
    check_hyper, check_inputs = (
        distillation_module._check_hyperparameters,
        distillation_module._check_inputs,
    )

    def count_hyper(*args):
        calls["hyper"] += 1
        return check_hyper(*args)

    def count_inputs(*args):
        calls["inputs"] += 1
        return check_inputs(*args)

    monkeypatch.setattr(distillation_module, "_check_hyperparameters", count_hyper)
    monkeypatch.setattr(distillation_module, "_check_inputs", count_inputs)
    module = PrototypeDistillation(temperature=0.5)
    module(S, MU, H)
    module(S, MU, H)
    assert calls == {"hyper": 1, "inputs": 2}


float_dtypes = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])


@st.composite
def mixed_dtype_problems(draw):
    student, prototypes, h = draw(problems())
    return student.to(draw(float_dtypes)), prototypes.to(draw(float_dtypes)), h


@given(problem=mixed_dtype_problems(), temperature=st.sampled_from([1e-3, 0.1, 5.0]))
@example(  # a flat student and a teacher whose one non-zero entry is a float16 subnormal: KL 0, rounded below it
    problem=(torch.zeros(1, 7, dtype=torch.float16),
             torch.tensor([[5.9605e-08, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float16), torch.tensor([0])),
    temperature=0.001,
)
def test_any_dtype_pair_gives_a_finite_loss_in_the_promoted_dtype(problem, temperature):
    student, prototypes, h = problem
    expected = torch.promote_types(
        torch.promote_types(student.dtype, prototypes.dtype), torch.float32
    )
    loss = prototype_distillation(student, prototypes, h, temperature=temperature)
    # KL >= 0 up to the rounding of the dtype it is computed in (float32 here: two equal, flat
    # distributions gave -6.8e-8 for a KL of exactly 0)
    rounding = 64 * torch.finfo(loss.dtype).eps
    assert loss.dtype == expected and bool(torch.isfinite(loss)) and float(loss) >= -rounding
    # The same numbers as float64 on the (rounded) inputs.
    exact = prototype_distillation(
        student.double(), prototypes.double(), h, temperature=temperature
    )
    torch.testing.assert_close(loss.double(), exact, rtol=1e-4, atol=1e-3)
