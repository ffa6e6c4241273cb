"""Fuzzing every public callable of ``s4rec_components`` (issue 9, "Fuzzing").

Each public name of ``s4rec_components.__all__`` that can be called has at least one
hypothesis test here (``test_every_public_callable_has_a_fuzz_entry`` fails for a new
public name without one). Each test draws an input that is either valid or broken in one
place (one argument of the wrong type, rank, size or dtype, empty, NaN / inf / huge values,
ids out of range, a bad hyper-parameter: NaN, inf, bool, str, None, negative) and holds
the call to the contract:

* a valid input gives a correct result: shapes as documented, losses in
  ``constants.loss_dtype`` of the inputs, finite wherever the math is finite (fp16 / bf16
  included), and the law the entry checks (rows summing to 1, ids in range, ...);
* a broken input gives a ``ValueError`` / ``TypeError`` whose message names the argument
  (or, where an input is marked "either", a result that passes the same checks);
* never a raw ``RuntimeError`` / ``IndexError`` / ``AssertionError`` / ``ZeroDivisionError``,
  a crash, or a silent NaN.

Non-finite inputs: the losses (contrastive, distillation, adversary) follow
``torch.nn.functional`` and propagate a NaN / inf of their input (a non-finite output from a
non-finite input is not silent); everything whose output is a discrete choice
(Sinkhorn, clustering, k-means, ranking) refuses them while value checks are on, since an
argmax over NaN would be a silent wrong answer.

With ``set_validate_args(False)`` value checks (ids out of range, non-finite values) are
skipped by design; ``test_validation_off_out_of_range_ids_need_not_raise`` documents that
such inputs then need not raise (they may give any result or a raw indexing error).

Figures (inputs tried, clear errors, results, wrong results) are counted per entry and
written, when the module finishes, with where they come from (date, command, commit, marked
``-dirty`` with uncommitted changes, and machine), to ``fuzz-figures.json`` in
pytest's base temporary folder (or the path in ``S4REC_FUZZ_FIGURES``) and printed (visible
with ``-s``)::

    S4REC_FUZZ_FIGURES=fuzz-figures.json python -m pytest -p no:cacheprovider -q -s \
        tests/test_fuzz.py --hypothesis-profile=ci

Bugs found and not yet fixed would be separate tests marked ``known_bug``
(``xfail(strict=True)``) with a minimal reproducer, flipping to failures once fixed; the ones
found so far (G-1 .. G-5) are fixed and kept as regression tests.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import sys
import typing
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import s4rec_components as s4
from s4rec_components import set_validate_args
from s4rec_components.constants import loss_dtype

from strategies import float_tensors, long_tensors

FUZZ = settings(deadline=None)
"""Per-test settings: no deadline, and no ``max_examples`` so the loaded profile's applies
(40 by default, 200 under ``--hypothesis-profile=ci``)."""

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
HUGE = {torch.float16: 6.0e4, torch.bfloat16: 2.0**50, torch.float32: 2.0**50, torch.float64: 2.0**50}
"""Largest magnitude drawn per dtype: fp16 near its maximum; 2**50 (about 1e15) elsewhere, whose
products (about 1e31 over a few dimensions, divided by a temperature >= 1e-3) fit in float32."""

# --------------------------------------------------------------------------------------
# Registry and figures
# --------------------------------------------------------------------------------------

ENTRIES: dict[str, list[str]] = defaultdict(list)
"""Public name -> fuzz tests that cover it."""

FIGURES: dict[str, Counter[str]] = defaultdict(Counter)
"""Per entry: ``inputs`` tried, ``clear_errors``, ``results`` checked, ``wrong``."""


def fuzzes(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated test as the fuzz entry of the public ``names``."""

    def register(test: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            ENTRIES[name].append(test.__name__)
        return test

    return register


@dataclass(frozen=True)
class Bad:
    """What a broken input must give.

    ``names``: the error message must name one of these (the broken argument).
    ``must_raise``: False where a result is acceptable too (it must then pass the checks).
    ``finite``: False where a non-finite result is acceptable (non-finite inputs of a loss).
    ``errors``: the documented exception types.
    """

    names: tuple[str, ...]
    must_raise: bool = True
    finite: bool = True
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError)


def bad(*names: str, must_raise: bool = True, finite: bool = True) -> Bad:
    return Bad(names, must_raise=must_raise, finite=finite)


def _names(error: BaseException, names: tuple[str, ...]) -> bool:
    text = str(error)
    return any(re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text) for name in names)


def attempt(
    entry: str,
    call: Callable[[], Any],
    check: Callable[[Any, bool, bool], None],
    broken: Bad | None,
) -> Any:
    """Run ``call`` once and hold it to the contract; count the outcome under ``entry``.

    ``check(result, finite, valid)`` asserts the result's laws; ``finite`` tells whether it
    must be finite, ``valid`` whether the input was valid (shapes, dtypes and laws are held
    exactly only then; an accepted broken input must give a well-formed, finite result). Returns the result, or None where a documented error was raised.
    """
    figures = FIGURES[entry]
    figures["inputs"] += 1
    try:
        result = call()
    except (ValueError, TypeError) as error:
        if broken is None:
            figures["wrong"] += 1
            raise AssertionError(
                f"{entry}: a valid input was refused: {type(error).__name__}: {error}"
            ) from error
        if not isinstance(error, broken.errors) or not _names(error, broken.names):
            figures["wrong"] += 1
            raise AssertionError(
                f"{entry}: the error does not name {broken.names}: {type(error).__name__}: {error}"
            ) from error
        figures["clear_errors"] += 1
        return None
    except Exception as error:  # the contract: never a raw error
        if broken is not None and isinstance(error, broken.errors) and _names(error, broken.names):
            figures["clear_errors"] += 1
            return None
        figures["wrong"] += 1
        raise AssertionError(f"{entry}: raw {type(error).__name__}: {error}") from error
    if broken is not None and broken.must_raise:
        figures["wrong"] += 1
        raise AssertionError(f"{entry}: a broken input ({broken.names}) was accepted: {result!r}"[:2000])
    try:
        check(result, broken is None or broken.finite, broken is None)
    except AssertionError:
        figures["wrong"] += 1
        raise
    except BaseException:  # hypothesis stopping a draw inside a check: the input does not count
        figures["inputs"] -= 1
        raise
    figures["results"] += 1
    return result


def _provenance() -> dict[str, Any]:
    """Where the figures come from: date, pytest's command line, commit ("-dirty" with
    uncommitted changes) and machine, from the benchmarks' provenance helpers."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import _memory
    finally:
        sys.path.pop(0)
    target = os.environ.get("S4REC_FUZZ_FIGURES")
    env = [f"S4REC_FUZZ_FIGURES={target}"] if target else []
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([*env, "python -m pytest", *sys.argv[1:]]),
        "git_commit": _memory.git_commit(),
        "machine": _memory.machine(),
    }


@pytest.fixture(scope="module", autouse=True)
def _write_figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Write and print the figures when the module is done."""
    yield
    entries = {name: dict(counts) for name, counts in sorted(FIGURES.items())}
    total = Counter[str]()
    for counts in FIGURES.values():
        total.update(counts)
    report = {
        **_provenance(),
        "profile": settings.default.max_examples,
        "total": {key: total.get(key, 0) for key in ("inputs", "clear_errors", "results", "wrong")},
        "entries": entries,
        "known_open_bugs": [name for name, reason in KNOWN_BUGS.items()],
    }
    path = os.environ.get("S4REC_FUZZ_FIGURES") or str(
        tmp_path_factory.getbasetemp() / "fuzz-figures.json"
    )
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    print(f"\nfuzz figures ({path}): {json.dumps(report['total'])}")


KNOWN_BUGS: dict[str, str] = {}
"""xfail'd reproducer test -> reason, for bugs found and not yet fixed (none today)."""


def known_bug(reason: str) -> Callable[[Callable[..., Any]], Any]:
    def mark(test: Callable[..., Any]) -> Any:
        KNOWN_BUGS[test.__name__] = reason
        return pytest.mark.xfail(strict=True, reason=reason)(test)

    return mark


@pytest.fixture(autouse=True)
def _validation_on() -> Iterator[None]:
    """Every test starts with value checks on (the default) and restores them."""
    set_validate_args(True)
    yield
    set_validate_args(True)


# --------------------------------------------------------------------------------------
# Shared strategies
# --------------------------------------------------------------------------------------

dtypes = st.sampled_from(FLOAT_DTYPES)
SCALES = ("unit", "huge", "zero", "tiny")


@st.composite
def values(draw: st.DrawFn, shape: tuple[int, ...], dtype: torch.dtype, scale: str | None = None) -> torch.Tensor:
    """A float tensor of ``shape`` and ``dtype`` with values on a drawn scale."""
    scale = scale or draw(st.sampled_from(SCALES))
    if scale == "zero":
        return torch.zeros(shape, dtype=dtype)
    high = {"unit": 3.0, "huge": HUGE[dtype], "tiny": 2.0**-10}[scale]
    # reshape: numpy turns a drawn 0-d array into shape (1,) on its way to torch
    return draw(float_tensors(shape, low=-high, high=high, dtype=dtype)).reshape(shape)


def poison(x: torch.Tensor, value: float, index: int) -> torch.Tensor:
    """``x`` with one entry (flat ``index`` modulo its size) set to ``value``."""
    x = x.clone()
    if x.numel():
        x.view(-1)[index % x.numel()] = value
    return x


REAL_POOL: tuple[Any, ...] = (
    math.nan, math.inf, -math.inf, True, False, "0.5", None, -1, -0.5, 0, 0.0, 1e-3, 0.5, 1,
    2.5, 1e3, [0.5], torch.tensor([0.5, 0.5]),
)
INT_POOL: tuple[Any, ...] = (-1, 0, 1, 2, 3, True, 2.0, "2", None, math.nan, math.inf)
"""Counts. No huge values: 10**30 Sinkhorn rounds never end (asked for, not a bug); ids of
2**63 and more are test_fixed_g5_augment_num_items_beyond_int64 (G-5)."""
SIZE_POOL: tuple[Any, ...] = (-1, 0, 1, 2, 3, 4, True, 2.0, "2", None, math.nan, math.inf)
"""Sizes of tensors a constructor allocates: no 10**30 (a size beyond memory gives torch's own
allocation error, which is not this library's to catch)."""


def is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_real(value: Any) -> bool | None:
    """Hyper-parameters documented as a finite real > 0 (inf: refused or accepted)."""
    if not is_real(value) or math.isnan(value) or value <= 0:
        return False
    if math.isinf(value):
        return None
    return True


def probability(value: Any) -> bool | None:
    return is_real(value) and 0 <= value <= 1


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[Any], bool | None]:
    def accept(value: Any) -> bool | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        return ok and (maximum is None or value <= maximum)

    return accept


def is_bool(value: Any) -> bool | None:
    return isinstance(value, bool)


@st.composite
def hyper(
    draw: st.DrawFn, name: str, accept: Callable[[Any], bool | None], pool: tuple[Any, ...] = REAL_POOL
) -> tuple[Any, Bad | None]:
    """A value for the hyper-parameter ``name`` from ``pool`` and what it must give."""
    value = draw(st.sampled_from(pool))
    verdict = accept(value)
    if verdict is True:
        return value, None
    return value, bad(name, must_raise=verdict is False)


@st.composite
def broken_float(
    draw: st.DrawFn, x: torch.Tensor, name: str, *, loss: bool = True
) -> tuple[Any, Bad]:
    """``x`` broken in one way, and what that must give.

    ``loss``: non-finite values may propagate to a non-finite result (losses); otherwise
    they must be refused.
    """
    kind = draw(st.sampled_from(("int", "bool", "ndim_up", "ndim_down", "list", "nan", "inf", "none", "empty")))
    if kind == "int":
        return x.long(), bad(name, must_raise=False)
    if kind == "bool":
        return x > 0, bad(name, must_raise=False)
    if kind == "ndim_up":
        return x.unsqueeze(0), bad(name)
    if kind == "ndim_down":
        return x.reshape(-1) if x.dim() > 1 else x.reshape(()) if x.numel() == 1 else x[None, None], bad(name)
    if kind == "list":
        return x.tolist(), bad(name, must_raise=False)
    if kind == "none":
        return None, bad(name)
    if kind == "empty":
        return x[:0], bad(name, must_raise=False)
    value = math.nan if kind == "nan" else draw(st.sampled_from((math.inf, -math.inf)))
    index = draw(st.integers(0, 10**6))
    return poison(x, value, index), bad(name, must_raise=not loss, finite=False)


@st.composite
def broken_ids(draw: st.DrawFn, ids: torch.Tensor, name: str, high: int | None) -> tuple[Any, Bad]:
    """Integer ``ids`` (valid range ``[0, high]``, no upper bound for None) broken in one way."""
    kind = draw(st.sampled_from(("float", "ndim_up", "list", "negative", "above", "none")))
    if kind == "float":
        return ids.double(), bad(name, must_raise=False)
    if kind == "ndim_up":
        return ids.unsqueeze(0), bad(name)
    if kind == "list":
        return ids.tolist(), bad(name, must_raise=False)
    if kind == "none":
        return None, bad(name)
    if ids.numel() == 0:
        return ids.unsqueeze(0), bad(name)
    if kind == "above" and high is None:  # no upper bound: a large id is valid
        return poison(ids, draw(st.integers(1, 2**62)), draw(st.integers(0, 10**6))), bad(name, must_raise=False)
    value = -draw(st.integers(1, 2**62)) if kind == "negative" else high + draw(st.integers(1, 2**62))
    return poison(ids, value, draw(st.integers(0, 10**6))), bad(name)


def finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def rounding(scores: torch.Tensor, epsilon: float) -> float:
    """Row-sum error allowed for Sinkhorn targets: float32 rounding, whatever ``scores / epsilon``
    (request G-2, fixed: the rows were 1.0017 at ``|scores / epsilon|`` ~ 3e4)."""
    return 1e-4


def check_tensor(
    out: Any, must_be_finite: bool, valid: bool, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    """A tensor; of ``shape`` and ``dtype`` for a valid input; finite where it must be."""
    assert isinstance(out, torch.Tensor), type(out)
    if valid:
        assert tuple(out.shape) == shape, (tuple(out.shape), shape)
        assert out.dtype == dtype, (out.dtype, dtype)
    if must_be_finite and out.is_floating_point():
        assert finite(out), out


@st.composite
def pick(
    draw: st.DrawFn,
    tensors: dict[str, st.SearchStrategy[tuple[Any, Bad]]],
    hypers: dict[str, tuple[Callable[[Any], bool | None], tuple[Any, ...]]],
) -> tuple[str | None, Any, Bad | None]:
    """Break at most one argument: ``(name or None, new value, what it must give)``.

    About a third of the cases are left valid.
    """
    names = list(tensors) + list(hypers)
    target = draw(st.sampled_from([None] * max(2, len(names) // 2) + names))
    if target is None:
        return None, None, None
    if target in tensors:
        value, broken = draw(tensors[target])
        return target, value, broken
    accept, pool = hypers[target]
    value, broken = draw(hyper(target, accept, pool))
    return target, value, broken


BOOL_POOL: tuple[Any, ...] = (True, False, 0, 1, "True", None, math.nan)
CHOICE_EXTRA: tuple[Any, ...] = ("", "MEAN", None, 1, True, "bogus")


def choice(allowed: tuple[str, ...]) -> tuple[Callable[[Any], bool | None], tuple[Any, ...]]:
    return (lambda value: isinstance(value, str) and value in allowed), allowed + CHOICE_EXTRA


def apply(args: dict[str, Any], hypers: dict[str, Any], target: str | None, value: Any) -> None:
    """Put the broken ``value`` in place of ``target`` (in whichever dict holds it)."""
    if target is None:
        return
    (args if target in args else hypers)[target] = value


# --------------------------------------------------------------------------------------
# sinkhorn
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_module", (False, True))
@fuzzes("sinkhorn_knopp", "SinkhornKnopp")
@FUZZ
@given(data=st.data())
def test_fuzz_sinkhorn(data: st.DataObject, as_module: bool) -> None:
    b, k = data.draw(st.integers(1, 8), "b"), data.draw(st.integers(1, 8), "k")
    dtype = data.draw(dtypes, "dtype")
    args = {"scores": data.draw(values((b, k), dtype), "scores")}
    hypers: dict[str, Any] = {
        "num_iters": data.draw(st.integers(1, 5)),
        "epsilon": data.draw(st.sampled_from((0.01, 0.05, 1.0, 10.0))),
        "distributed": False,
    }
    target, value, broken = data.draw(
        pick(
            {"scores": broken_float(args["scores"], "scores", loss=False)},
            {
                "num_iters": (int_at_least(1), INT_POOL),
                "epsilon": (positive_real, REAL_POOL),
                "distributed": (is_bool, BOOL_POOL),
            },
        ),
        "broken",
    )
    apply(args, hypers, target, value)

    def call() -> torch.Tensor:
        if as_module:
            return s4.SinkhornKnopp(**hypers)(args["scores"])
        return s4.sinkhorn_knopp(args["scores"], **hypers)

    def check(q: Any, must_be_finite: bool, valid: bool) -> None:
        check_tensor(q, must_be_finite, valid, (b, k), torch.float32)
        if valid:
            assert bool((q >= 0).all())
            torch.testing.assert_close(q.sum(1), torch.ones(b), atol=rounding(args["scores"], hypers["epsilon"]), rtol=0)

    attempt("SinkhornKnopp" if as_module else "sinkhorn_knopp", call, check, broken)


# --------------------------------------------------------------------------------------
# gradient_reversal
# --------------------------------------------------------------------------------------

SCALE_POOL: tuple[Any, ...] = REAL_POOL + (
    torch.tensor(0.5), torch.tensor(math.nan), torch.tensor(1), torch.tensor(0.5, dtype=torch.float16),
)


def real_or_scalar_tensor(value: Any) -> bool | None:
    """``scale``: a finite real or a finite 0-d floating tensor (negative and 0 allowed)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 and value.is_floating_point():
            return bool(torch.isfinite(value))
        return False
    return is_real(value) and math.isfinite(value)


@pytest.mark.parametrize("mode", ('function', 'module', 'set_scale'))
@fuzzes("grad_reverse", "GradientReversal")
@FUZZ
@given(data=st.data())
def test_fuzz_grad_reverse(data: st.DataObject, mode: str) -> None:
    shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3), "shape"))
    dtype = data.draw(dtypes, "dtype")
    args = {"x": data.draw(values(shape, dtype), "x")}
    hypers: dict[str, Any] = {"scale": data.draw(st.sampled_from((0.0, 1.0, -2.0, 0.5)))}
    kind = data.draw(st.sampled_from(("int", "bool", "list", "none")))
    broken_x = {
        "int": (args["x"].long(), bad("x")), "bool": (args["x"] > 0, bad("x")),
        "list": (args["x"].tolist(), bad("x")), "none": (None, bad("x")),
    }[kind]
    target, value, broken = data.draw(
        pick({"x": st.just(broken_x)}, {"scale": (real_or_scalar_tensor, SCALE_POOL)}), "broken"
    )
    apply(args, hypers, target, value)

    def call() -> tuple[torch.Tensor, torch.Tensor]:
        x = args["x"]
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            x = x.clone().requires_grad_(True)
        if mode == "function":
            y = s4.grad_reverse(x, **hypers)
        elif mode == "module":
            y = s4.GradientReversal(**hypers)(x)
        else:
            module = s4.GradientReversal()
            module.set_scale(hypers["scale"])
            y = module(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        return y, grad

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        y, grad = out
        check_tensor(y, must_be_finite, valid, shape, dtype)
        if valid:
            assert torch.equal(y, args["x"])
            scale = float(hypers["scale"])
            torch.testing.assert_close(grad, torch.full_like(grad, -scale))

    name = {"function": "grad_reverse", "module": "GradientReversal", "set_scale": "GradientReversal"}[mode]
    attempt(name, call, check, broken)


@fuzzes("dann_schedule")
@FUZZ
@given(data=st.data())
def test_fuzz_dann_schedule(data: st.DataObject) -> None:
    progress: Any = data.draw(st.floats(0.0, 1.0), "progress")
    hypers: dict[str, Any] = {"gamma": data.draw(st.floats(1e-3, 1e3), "gamma")}
    args = {"progress": progress}
    target, value, broken = data.draw(
        pick({}, {"progress": (probability, REAL_POOL), "gamma": (positive_real, REAL_POOL)}), "broken"
    )
    apply(args, hypers, target, value)

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        # [0, 1): mathematically below 1, but 1 - 2 / (1 + e^{gamma p}) rounds to 1.0 for gamma p > 37
        assert isinstance(out, float) and 0.0 <= out <= 1.0, out
        if valid:
            expected = 2.0 / (1.0 + math.exp(-hypers["gamma"] * args["progress"])) - 1.0
            assert math.isclose(out, expected, rel_tol=1e-9, abs_tol=1e-12)

    attempt("dann_schedule", lambda: s4.dann_schedule(args["progress"], **hypers), check, broken)


# --------------------------------------------------------------------------------------
# losses: contrastive, distillation, adversary; clustering
# --------------------------------------------------------------------------------------

TEMPERATURES = (1e-3, 0.05, 0.5, 1.0, 20.0)


def assert_close_to_float64(out: torch.Tensor, reference: torch.Tensor, magnitude: float) -> None:
    """``out`` (computed in float32 or float64) against the float64 computation: the error
    allowed grows with the largest logit ``magnitude`` (cancellation in log-sum-exp)."""
    atol = 1e-4 * (1.0 + magnitude) if out.dtype != torch.float64 else 1e-9 * (1.0 + magnitude)
    torch.testing.assert_close(out.double(), reference, atol=atol, rtol=1e-4)


@st.composite
def embedding_batches(draw: st.DrawFn, with_prototypes: bool) -> dict[str, Any]:
    """``b, d, k``, one scale and up to three float dtypes, and the tensors drawn with them."""
    b, d, k = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    scale = draw(st.sampled_from(SCALES))
    first = draw(dtypes)
    mixed = draw(st.booleans())
    other = draw(dtypes) if mixed else first
    out: dict[str, Any] = {"b": b, "d": d, "k": k, "scale": scale}
    out["z1"] = draw(values((b, d), first, scale))
    out["z2"] = draw(values((b, d), other, scale))
    if with_prototypes:
        out["prototypes"] = draw(values((k, d), draw(dtypes) if mixed else first, scale))
        out["assignments"] = draw(long_tensors((b,), 0, k - 1))
    return out


@pytest.mark.parametrize("as_module", (False, True))
@fuzzes("intent_info_nce", "IntentInfoNCE")
@FUZZ
@given(data=st.data())
def test_fuzz_intent_info_nce(data: st.DataObject, as_module: bool) -> None:
    with_prototypes = data.draw(st.booleans(), "with_prototypes")
    batch = data.draw(embedding_batches(with_prototypes), "batch")
    b, k = batch["b"], batch["k"]
    args: dict[str, Any] = {"z1": batch["z1"], "z2": batch["z2"], "prototypes": None, "assignments": None}
    if with_prototypes:
        args["prototypes"], args["assignments"] = batch["prototypes"], batch["assignments"]
    if data.draw(st.booleans(), "with_groups"):
        args["groups"] = data.draw(long_tensors((b,), 0, 3), "groups")
    hypers: dict[str, Any] = {
        "temperature": data.draw(st.sampled_from(TEMPERATURES), "temperature"),
        "similarity": data.draw(st.sampled_from(("dot", "cosine")), "similarity"),
        "reduction": data.draw(st.sampled_from(("mean", "sum", "none")), "reduction"),
        "gather_distributed": False,
        "positive_in_denominator": data.draw(st.booleans(), "positive_in_denominator"),
    }
    breakers: dict[str, st.SearchStrategy[tuple[Any, Bad]]] = {
        "z1": broken_float(args["z1"], "z1"),
        "z2": broken_float(args["z2"], "z2"),
    }
    if with_prototypes:
        breakers["prototypes"] = broken_float(args["prototypes"], "prototypes")
        breakers["assignments"] = broken_ids(args["assignments"], "assignments", k - 1)
    if "groups" in args:
        breakers["groups"] = st.sampled_from(
            ((args["groups"].double(), bad("groups", must_raise=False)), (args["groups"][:-1], bad("groups")),
             (args["groups"][None], bad("groups")), (args["groups"].tolist(), bad("groups", must_raise=False)))
        )
    target, value, broken = data.draw(
        pick(
            breakers,
            {
                "temperature": (positive_real, REAL_POOL),
                "similarity": choice(("dot", "cosine")),
                "reduction": choice(("mean", "sum", "none")),
                "gather_distributed": (is_bool, BOOL_POOL),
                "positive_in_denominator": (is_bool, BOOL_POOL),
            },
        ),
        "broken",
    )
    apply(args, hypers, target, value)
    if target == "z2" and broken is not None and not broken.must_raise and isinstance(value, torch.Tensor):
        if value.shape != args["z1"].shape:  # an emptied z2 no longer matches z1
            broken = bad("z1", "z2")

    def run(arguments: dict[str, Any]) -> torch.Tensor:
        if as_module:
            return s4.IntentInfoNCE(**hypers)(**arguments)
        return s4.intent_info_nce(**arguments, **hypers)

    def check(loss: Any, must_be_finite: bool, valid: bool) -> None:
        shape = (2 * b,) if hypers["reduction"] == "none" else ()
        floats = [t.dtype for t in (args["z1"], args["z2"], args["prototypes"]) if t is not None]
        check_tensor(loss, must_be_finite, valid, shape, loss_dtype(*floats))
        if valid:
            if hypers["positive_in_denominator"] is True:  # -log of a probability
                assert bool((loss >= -1e-3 * (1 + loss.abs())).all()), loss
            as64 = {key: (t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t)
                    for key, t in args.items()}
            reference = run(as64)
            if hypers["similarity"] == "dot":
                largest = max(float(t.double().abs().max()) for t in (args["z1"], args["z2"]))
                magnitude = largest**2 * batch["d"] / hypers["temperature"]
            else:
                magnitude = 1.0 / hypers["temperature"]
            assert_close_to_float64(loss, reference, magnitude)

    attempt("IntentInfoNCE" if as_module else "intent_info_nce", lambda: run(args), check, broken)


@pytest.mark.parametrize("as_module", (False, True))
@fuzzes("prototype_distillation", "PrototypeDistillation")
@FUZZ
@given(data=st.data())
def test_fuzz_prototype_distillation(data: st.DataObject, as_module: bool) -> None:
    batch = data.draw(embedding_batches(True), "batch")
    b, k = batch["b"], batch["k"]
    args: dict[str, Any] = {
        "student": batch["z1"], "prototypes": batch["prototypes"], "assignments": batch["assignments"]
    }
    hypers: dict[str, Any] = {
        "temperature": data.draw(st.sampled_from(TEMPERATURES), "temperature"),
        "detach_teacher": data.draw(st.booleans(), "detach_teacher"),
        "reduction": data.draw(st.sampled_from(("mean", "sum", "none")), "reduction"),
    }
    target, value, broken = data.draw(
        pick(
            {
                "student": broken_float(args["student"], "student"),
                "prototypes": broken_float(args["prototypes"], "prototypes"),
                "assignments": broken_ids(args["assignments"], "assignments", k - 1),
            },
            {
                "temperature": (positive_real, REAL_POOL),
                "detach_teacher": (is_bool, BOOL_POOL),
                "reduction": choice(("mean", "sum", "none")),
            },
        ),
        "broken",
    )
    apply(args, hypers, target, value)
    if target == "prototypes" and broken is not None and not broken.must_raise:
        if isinstance(value, torch.Tensor) and value.shape[0] == 0:  # assignments now out of range
            broken = bad("prototypes", "assignments")
    if target == "student" and broken is not None and isinstance(value, torch.Tensor) and value.shape[:1] == (0,):
        broken = bad("student", "assignments")

    def run(arguments: dict[str, Any]) -> torch.Tensor:
        if as_module:
            return s4.PrototypeDistillation(**hypers)(**arguments)
        return s4.prototype_distillation(**arguments, **hypers)

    def check(loss: Any, must_be_finite: bool, valid: bool) -> None:
        shape = (b,) if hypers["reduction"] == "none" else ()
        check_tensor(loss, must_be_finite, valid, shape, loss_dtype(args["student"].dtype, args["prototypes"].dtype))
        if valid:
            assert bool((loss >= -1e-3 * (1 + loss.abs())).all()), loss
            as64 = {key: (t.double() if t.is_floating_point() else t) for key, t in args.items()}
            largest = max(float(t.double().abs().max()) for t in (args["student"], args["prototypes"]))
            assert_close_to_float64(loss, run(as64), largest**2 * batch["d"] / hypers["temperature"])

    attempt("PrototypeDistillation" if as_module else "prototype_distillation", lambda: run(args), check, broken)


@pytest.mark.parametrize("mode", ('function', 'module'))
@fuzzes("head_tail_adversarial_loss", "HeadTailAdversary", "AdversaryOutput")
@FUZZ
@given(data=st.data())
def test_fuzz_head_tail_adversary(data: st.DataObject, mode: str) -> None:
    batch = data.draw(embedding_batches(True), "batch")
    b, d, c = batch["b"], batch["d"], batch["k"] + 1
    weight = data.draw(values((c, d), data.draw(dtypes), batch["scale"]), "weight")
    args: dict[str, Any] = {"z": batch["z1"], "labels": data.draw(long_tensors((b,), 0, c - 1), "labels")}
    if mode == "function":
        args["weight"] = weight
        args["bias"] = data.draw(st.one_of(st.none(), values((c,), weight.dtype, "unit")), "bias")
    hypers: dict[str, Any] = {"scale": data.draw(st.sampled_from((0.0, 1.0, -0.5, 2.0)), "scale")}
    breakers = {
        "z": broken_float(args["z"], "z"),
        "labels": broken_ids(args["labels"], "labels", c - 1),
    }
    if mode == "function":
        breakers["weight"] = broken_float(args["weight"], "weight")
    target, value, broken = data.draw(
        pick(breakers, {"scale": (real_or_scalar_tensor, SCALE_POOL)}), "broken"
    )
    apply(args, hypers, target, value)
    if target == "z" and broken is not None and isinstance(value, torch.Tensor) and value.shape[:1] == (0,):
        broken = bad("z", "labels", must_raise=False)
    if target == "weight" and broken is not None and isinstance(value, torch.Tensor) and value.shape[:1] == (0,):
        broken = bad("weight", "labels", "bias")
    if target == "weight" and broken is not None and args.get("bias") is not None and not broken.must_raise:
        broken = bad("weight", "bias", must_raise=False, finite=broken.finite)

    def run() -> Any:
        if mode == "module":
            return s4.HeadTailAdversary(d, c, **hypers)(**args)
        return s4.head_tail_adversarial_loss(**args, **hypers)

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(out, s4.AdversaryOutput), type(out)
        if mode == "function":
            floats = [t.dtype for t in (args["z"], args["weight"], args["bias"]) if t is not None]
        else:
            floats = [args["z"].dtype, torch.float32]
        check_tensor(out.loss, must_be_finite, valid, (), loss_dtype(*floats))
        assert isinstance(out.logits, torch.Tensor)
        if valid:
            assert tuple(out.logits.shape) == (b, c)
            assert out.loss >= -1e-6

    attempt("HeadTailAdversary" if mode == "module" else "head_tail_adversarial_loss", run, check, broken)


@pytest.mark.parametrize("mode", ('function', 'module', 'assign'))
@fuzzes("online_clustering", "OnlineIntentClustering", "ClusteringOutput")
@FUZZ
@given(data=st.data())
def test_fuzz_online_clustering(data: st.DataObject, mode: str) -> None:
    batch = data.draw(embedding_batches(True), "batch")
    b, d, k = batch["b"], batch["d"], batch["k"]
    args: dict[str, Any] = {"z": batch["z1"]}
    if mode == "function":
        args["prototypes"] = batch["prototypes"]
    hypers: dict[str, Any] = {
        "temperature": data.draw(st.sampled_from((0.05, 0.1, 1.0)), "temperature"),
        "epsilon": data.draw(st.sampled_from((0.01, 0.05, 1.0)), "epsilon"),
        "num_iters": data.draw(st.integers(1, 4), "num_iters"),
        "normalize": data.draw(st.booleans(), "normalize"),
        "assign_from": data.draw(st.sampled_from(("targets", "probs")), "assign_from"),
    }
    breakers = {"z": broken_float(args["z"], "z", loss=False)}
    if mode == "function":
        breakers["prototypes"] = broken_float(args["prototypes"], "prototypes", loss=False)
    target, value, broken = data.draw(
        pick(
            breakers,
            {
                "temperature": (positive_real, REAL_POOL),
                "epsilon": (positive_real, REAL_POOL),
                "num_iters": (int_at_least(1), INT_POOL),
                "normalize": (is_bool, BOOL_POOL),
                "assign_from": choice(("targets", "probs")),
            },
        ),
        "broken",
    )
    apply(args, hypers, target, value)

    def run() -> Any:
        if mode == "function":
            return s4.online_clustering(**args, **hypers)
        module = s4.OnlineIntentClustering(d, k, **hypers)
        out = module(args["z"])
        if mode == "assign":
            assignments = module.assign(args["z"])
            assert torch.equal(assignments, out.assignments), (assignments, out.assignments)
        return out

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(out, s4.ClusteringOutput), type(out)
        protos = args["prototypes"].dtype if mode == "function" else torch.float32
        dtype = loss_dtype(args["z"].dtype, protos) if valid else out.loss.dtype
        check_tensor(out.loss, must_be_finite, valid, (), dtype)
        check_tensor(out.probs, must_be_finite, valid, (b, k), dtype)
        check_tensor(out.targets, must_be_finite, valid, (b, k), dtype)
        check_tensor(out.assignments, True, valid, (b,), torch.long)
        if valid:
            assert bool(((out.assignments >= 0) & (out.assignments < k)).all())
            torch.testing.assert_close(out.probs.sum(1).double(), torch.ones(b, dtype=torch.float64), atol=1e-3, rtol=0)
            # the targets are Sinkhorn's rows of scores / epsilon, scores = z mu / temperature
            scale = 1.0 if hypers["normalize"] else float(args["z"].double().abs().max()) * d
            atol = rounding(torch.tensor(scale / hypers["temperature"]), hypers["epsilon"])
            torch.testing.assert_close(out.targets.sum(1).double(), torch.ones(b, dtype=torch.float64), atol=atol, rtol=0)
            assert out.loss >= -1e-3

    attempt("online_clustering" if mode == "function" else "OnlineIntentClustering", run, check, broken)


# --------------------------------------------------------------------------------------
# augment
# --------------------------------------------------------------------------------------

GENERATOR_POOL: tuple[Any, ...] = ("generator", None, 0, "0", 1.5)


def generator_ok(value: Any) -> bool | None:
    return value is None or isinstance(value, torch.Generator)


@st.composite
def padded_ids(draw: st.DrawFn, max_items: int = 12, empty_rows: bool = True) -> tuple[torch.Tensor, int]:
    """``(ids, n)``: ``(b, l)`` left-padded ids in ``1..n``; some rows may be all padding."""
    b, l, n = draw(st.integers(1, 5)), draw(st.integers(1, 8)), draw(st.integers(1, max_items))
    ids = draw(long_tensors((b, l), 1, n))
    low = 0 if empty_rows else 1
    lengths = torch.tensor(draw(st.lists(st.integers(low, l), min_size=b, max_size=b)))
    ids[torch.arange(l).expand(b, l) < (l - lengths).unsqueeze(1)] = 0
    return ids, n


def right_padded(ids: torch.Tensor) -> torch.Tensor | None:
    """``ids`` with a padding 0 after the first real item of some row, or None if impossible."""
    for row in range(ids.shape[0]):
        real = (ids[row] != 0).nonzero().flatten().tolist()
        if real and real[0] < ids.shape[1] - 1:
            out = ids.clone()
            out[row, -1] = 0
            return out
    return None


def augment_checks(
    name: str, original: torch.Tensor, high: int
) -> Callable[[Any, bool, bool], None]:
    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        check_tensor(out, True, valid, tuple(original.shape), torch.long)
        if not valid:
            return
        assert bool(((out >= 0) & (out <= high)).all()), (out, high)
        assert out is not original
        kept = (out != 0).sum(1)
        if name == "crop_items":
            assert bool((kept <= (original != 0).sum(1)).all())
        if name == "reorder_items":
            assert torch.equal(out.sort(1).values, original.sort(1).values)
        # left-padded: no zero after the first real item (mask_items with mask_id=0 excepted)
        real = out != 0
        started = real.cumsum(1) > 0
        if name != "mask_items":
            assert not bool((started & ~real).any()), out

    return check


@pytest.mark.parametrize("name", ('mask_items', 'crop_items', 'reorder_items', 'insert_items'))
@fuzzes("mask_items", "crop_items", "reorder_items", "insert_items")
@FUZZ
@given(data=st.data())
def test_fuzz_augment_functions(data: st.DataObject, name: str) -> None:
    ids, n = data.draw(padded_ids(), "ids")
    args: dict[str, Any] = {"item_ids": ids}
    hypers: dict[str, Any] = {"ratio": data.draw(st.sampled_from((0.0, 0.2, 0.5, 1.0)), "ratio"), "generator": None}
    if data.draw(st.booleans(), "seeded"):
        hypers["generator"] = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31), "seed"))
    checks: dict[str, tuple[Callable[[Any], bool | None], tuple[Any, ...]]] = {
        "ratio": (probability, REAL_POOL),
        "generator": (generator_ok, GENERATOR_POOL),
    }
    high = n + 1
    if name in ("mask_items", "insert_items"):
        hypers["num_items"] = n
        checks["num_items"] = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n or None if is_real(v) and v >= 1 else False, INT_POOL)
    if name == "mask_items":
        hypers["mask_id"] = data.draw(st.sampled_from((None, 0, n + 1, n + 5)), "mask_id")
        high = max(n + 1, hypers["mask_id"] or 0)
        checks["mask_id"] = (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and (v == 0 or v > n)), (None, 0, 1, n, n + 1, -1, True, 1.5, "0"))
    if name == "insert_items" and data.draw(st.booleans(), "with_pool"):
        hypers["insert_pool"] = data.draw(long_tensors((data.draw(st.integers(1, 4)),), 1, n), "insert_pool")
        checks["insert_pool"] = (
            lambda v: v is None or (isinstance(v, torch.Tensor) and not v.is_floating_point() and v.dim() == 1 and v.numel() > 0 and bool(((v >= 1) & (v <= n)).all())),
            (None, torch.tensor([0]), torch.tensor([n + 1]), torch.tensor([1.0]), torch.zeros(0, dtype=torch.long), torch.tensor([[1]]), [1]),
        )
    id_high = high if name in ("mask_items", "insert_items") else None
    breakers = {"item_ids": broken_ids(ids, "item_ids", id_high)}
    target, value, broken = data.draw(pick(breakers, checks), "broken")
    if target is None and data.draw(st.integers(0, 5), "right_padded") == 0:
        moved = right_padded(ids)
        if moved is not None:
            target, value, broken = "item_ids", moved, bad("item_ids")
    if target == "num_items" and broken is None:
        high = max(high, value + 1)
        mask_id = hypers.get("mask_id")
        if name == "mask_items" and mask_id is not None and 0 < mask_id <= value:
            broken = bad("num_items", "mask_id")  # a larger catalogue turns the mask id into a real item
    if target == "num_items" and broken is not None:  # a smaller catalogue: ids or pool may be out of it
        broken = bad("num_items", "item_ids", "insert_pool", "mask_id", must_raise=broken.must_raise)
    apply(args, hypers, target, value)
    if hypers.get("generator") == "generator":
        hypers["generator"] = torch.Generator()
    if target == "generator" and value == "generator":
        broken = None
    function = getattr(s4, name)
    check = augment_checks(name, ids, high)
    attempt(name, lambda: function(args["item_ids"], **hypers), check, broken)


OPERATIONS = ("mask", "crop", "reorder", "insert")


def operations_ok(count: int) -> Callable[[Any], bool | None]:
    """``operations``: a non-empty sequence of known names (refused otherwise); one of another
    length or with repeats may still be accepted (``operation_probs`` may then not fit)."""

    def accept(value: Any) -> bool | None:
        if not isinstance(value, (tuple, list)) or not value or not set(value) <= set(OPERATIONS):
            return False
        return True if len(value) == count and len(set(value)) == count else None

    return accept


@fuzzes("SequenceAugmenter")
@FUZZ
@given(data=st.data())
def test_fuzz_sequence_augmenter(data: st.DataObject) -> None:
    ids, n = data.draw(padded_ids(), "ids")
    operations = tuple(data.draw(st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=4, unique=True), "operations"))
    hypers: dict[str, Any] = {"operations": operations}
    for ratio in ("mask_ratio", "crop_ratio", "reorder_ratio", "insert_ratio"):
        hypers[ratio] = data.draw(st.sampled_from((0.0, 0.2, 0.7, 1.0)), ratio)
    hypers["mask_id"] = data.draw(st.sampled_from((None, 0, n + 1)), "mask_id")
    weights = data.draw(st.lists(st.integers(0, 3), min_size=len(operations), max_size=len(operations)), "weights")
    if sum(weights) and data.draw(st.booleans(), "with_probs"):
        hypers["operation_probs"] = [w / sum(weights) for w in weights]
    args = {"item_ids": ids}
    high = max(n + 1, hypers["mask_id"] or 0)
    checks: dict[str, tuple[Callable[[Any], bool | None], tuple[Any, ...]]] = {
        "mask_ratio": (probability, REAL_POOL),
        "insert_ratio": (probability, REAL_POOL),
        "operations": (
            operations_ok(len(operations)),
            ((), ("mask", "bogus"), "mask", None, 3, ("crop",) * len(operations), operations),
        ),
        "operation_probs": (
            lambda v: v is None or (isinstance(v, list) and len(v) == len(operations) and all(is_real(p) and p >= 0 for p in v) and math.isclose(sum(v), 1.0)),
            (None, [1.0] * (len(operations) + 1), [-1.0] + [1.0] * (len(operations) - 1) + [1.0], [math.nan] * len(operations), [0.0] * len(operations), "uniform"),
        ),
    }
    target, value, broken = data.draw(pick({"item_ids": broken_ids(ids, "item_ids", high)}, checks), "broken")
    if target == "operations" and broken is not None and not broken.must_raise:
        # a valid other list of operations: the probabilities may no longer fit
        broken = bad("operations", "operation_probs", must_raise=False)
    apply(args, hypers, target, value)
    if target == "operation_probs" and broken is not None:
        broken = bad("operation_probs")
    with_ops = data.draw(st.booleans(), "with_operations")
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31), "seed"))

    def run() -> Any:
        augmenter = s4.SequenceAugmenter(n, **hypers)
        if with_ops:
            return augmenter.with_operations(args["item_ids"], generator=generator)
        return augmenter(args["item_ids"], generator=generator)

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        views = out[0] if with_ops else out
        check_tensor(views, True, valid, tuple(ids.shape), torch.long)
        if valid:
            assert bool(((views >= 0) & (views <= high)).all())
        if with_ops:
            chosen = out[1]
            check_tensor(chosen, True, valid, (ids.shape[0],), torch.long)
            if valid:
                assert bool(((chosen >= 0) & (chosen < len(hypers["operations"]))).all())
                if hypers.get("operation_probs") is not None:
                    probs = torch.tensor(hypers["operation_probs"])
                    assert bool((probs[chosen] > 0).all()), (chosen, probs)

    attempt("SequenceAugmenter", run, check, broken)


# --------------------------------------------------------------------------------------
# encoder, attention mask, ICLRec conversion
# --------------------------------------------------------------------------------------


def dropout_ok(value: Any) -> bool | None:
    return is_real(value) and 0 <= value <= 1


@fuzzes("SASRecEncoder")
@FUZZ
@given(data=st.data())
def test_fuzz_sasrec_encoder(data: st.DataObject) -> None:
    ids, n = data.draw(padded_ids(), "ids")
    b, l = ids.shape
    heads = data.draw(st.sampled_from((1, 2)), "num_heads")
    hypers: dict[str, Any] = {
        "hidden_size": heads * data.draw(st.integers(1, 4), "head_size"),
        "num_layers": data.draw(st.integers(1, 2), "num_layers"),
        "num_heads": heads,
        "max_len": l + data.draw(st.integers(0, 2), "extra_len"),
        "dropout": data.draw(st.sampled_from((0.0, 0.5)), "dropout"),
        "compute_path": data.draw(st.sampled_from(("auto", "dense", "packed")), "compute_path"),
        "padding_attention": "masked",
    }
    if hypers["compute_path"] != "packed":
        hypers["padding_attention"] = data.draw(st.sampled_from(("masked", "iclrec")), "padding_attention")
    size = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1 and v % heads == 0, SIZE_POOL)
    target, value, broken = data.draw(
        pick(
            {"item_ids": broken_ids(ids, "item_ids", n + 1)},
            {
                "hidden_size": size,
                "num_layers": (int_at_least(1), SIZE_POOL),
                "dropout": (dropout_ok, REAL_POOL),
                "layer_norm_eps": (positive_real, REAL_POOL),
                "initializer_range": (positive_real, REAL_POOL),
                "compute_path": choice(("auto", "dense", "packed")),
            },
        ),
        "broken",
    )
    args = {"item_ids": ids}
    apply(args, hypers, target, value)
    if target == "compute_path" and value == "packed" and hypers["padding_attention"] == "iclrec":
        broken = bad("compute_path", "padding_attention")
    if target == "hidden_size" and broken is not None and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        broken = bad("hidden_size", "num_heads")  # not divisible by num_heads
    method = data.draw(st.sampled_from(("forward", "represent", "embed_items", "score_items")), "method")
    if target == "item_ids" and isinstance(value, torch.Tensor) and value.dim() == 3:
        # embed_items takes ids of any shape ((..., ) -> (..., d)); the sequence methods need (b, l)
        broken = None if method == "embed_items" else bad("item_ids")
    if target is None and data.draw(st.integers(0, 3), "too_long") == 0:
        args["item_ids"] = torch.cat([ids, ids], 1)  # longer than max_len: only the encoder minds
        too_long = 2 * l > hypers["max_len"] and method in ("forward", "represent")
        target, broken = "item_ids", (bad("item_ids") if too_long else None)
    pooling = data.draw(st.sampled_from(("last", "mean", "mean_all", "flatten")), "pooling")
    h_dtype = data.draw(dtypes, "h_dtype")
    if method == "represent" and pooling == "last" and target is None and data.draw(st.booleans(), "right_pad"):
        moved = right_padded(ids)
        if moved is not None:
            args["item_ids"], target, broken = moved, "item_ids", bad("item_ids")
    size_ok = isinstance(hypers["hidden_size"], int) and not isinstance(hypers["hidden_size"], bool)
    d = hypers["hidden_size"] if size_ok and hypers["hidden_size"] >= 1 else 1
    h = data.draw(values((b, d), h_dtype), "h") if method == "score_items" else None
    if method == "score_items" and target == "item_ids":
        target, broken = None, None  # item_ids is not an argument of score_items

    def run() -> Any:
        torch.manual_seed(0)
        encoder = s4.SASRecEncoder(n, **hypers).eval()
        x = args["item_ids"]
        if method == "forward":
            return encoder(x)
        if method == "represent":
            return encoder.represent(x, pooling=pooling)
        if method == "embed_items":
            return encoder.embed_items(x)
        return encoder.score_items(h)

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        x = args["item_ids"]
        length = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() == 2 else l
        shape, dtype = {
            "forward": ((b, length, d), torch.float32),
            "represent": ((b, length * d) if pooling == "flatten" else (b, d), torch.float32),
            "embed_items": ((*x.shape, d) if isinstance(x, torch.Tensor) else (b, length, d), torch.float32),
            "score_items": ((b, n + 1), torch.promote_types(h_dtype, torch.float32)),
        }[method]
        check_tensor(out, True, valid, shape, dtype)
        if valid and method == "forward" and hypers["padding_attention"] == "masked":
            assert bool((out[x == 0] == 0).all())  # padding outputs are zero

    attempt("SASRecEncoder", run, check, broken)


@fuzzes("sasrec_attention_mask")
@FUZZ
@given(data=st.data())
def test_fuzz_sasrec_attention_mask(data: st.DataObject) -> None:
    ids, n = data.draw(padded_ids(), "ids")
    b, l = ids.shape
    args: dict[str, Any] = {"item_ids": ids}
    hypers: dict[str, Any] = {"padding_attention": data.draw(st.sampled_from(("masked", "iclrec")), "padding_attention")}
    kind = data.draw(st.sampled_from(("float", "1d", "3d", "list", "none")))
    broken_x = {
        "float": (ids.double(), bad("item_ids")), "1d": (ids[0], bad("item_ids")),
        "3d": (ids[None], bad("item_ids")), "list": (ids.tolist(), bad("item_ids", must_raise=False)),
        "none": (None, bad("item_ids")),
    }[kind]
    target, value, broken = data.draw(
        pick({"item_ids": st.just(broken_x)}, {"padding_attention": choice(("masked", "iclrec"))}), "broken"
    )
    apply(args, hypers, target, value)

    def check(mask: Any, must_be_finite: bool, valid: bool) -> None:
        check_tensor(mask, True, valid, (b, l, l), torch.bool)
        if valid:
            causal = torch.ones(l, l, dtype=torch.bool).tril()
            real = ids != 0
            expected = causal & real[:, None, :] & real[:, :, None]
            rows_real = real[:, :, None].expand(b, l, l)
            # real queries: causal over real keys, whatever the padding mode
            assert torch.equal(mask[rows_real], expected[rows_real])

    attempt("sasrec_attention_mask", lambda: s4.sasrec_attention_mask(args["item_ids"], **hypers), check, broken)


@pytest.mark.parametrize("direction", ('to_encoder', 'to_iclrec'))
@fuzzes("iclrec_to_encoder_state_dict", "encoder_to_iclrec_state_dict", "ICLRecShapes")
@FUZZ
@given(data=st.data())
def test_fuzz_iclrec_conversion(data: st.DataObject, direction: str) -> None:
    n, heads = data.draw(st.integers(1, 9), "n"), data.draw(st.sampled_from((1, 2)), "heads")
    d, layers, max_len = heads * data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 6))
    torch.manual_seed(0)
    encoder = s4.SASRecEncoder(n, hidden_size=d, num_layers=layers, num_heads=heads, max_len=max_len)
    state = s4.encoder_to_iclrec_state_dict(encoder)
    broken: Bad | None = None
    if direction == "to_iclrec":
        # a module that is not an encoder: test_fixed_g3_iclrec_export_refuses_any_other_module
        kind = data.draw(st.sampled_from(("valid", "valid", "dict", "none")), "kind")
        argument: Any = {"valid": encoder, "linear": torch.nn.Linear(2, 2), "dict": state, "none": None}[kind]
        broken = None if kind == "valid" else bad("encoder")
        if kind == "dict":
            broken = bad("encoder", "Module", must_raise=True)

        def run() -> Any:
            return s4.encoder_to_iclrec_state_dict(argument)

        def check(out: Any, must_be_finite: bool, valid: bool) -> None:
            assert isinstance(out, dict) and all(isinstance(v, torch.Tensor) for v in out.values())
            assert set(out) == set(state)

        attempt("encoder_to_iclrec_state_dict", run, check, broken)
        return
    mangled: Any = dict(state)
    keys = sorted(state)
    kind = data.draw(st.sampled_from(("valid", "valid", "drop", "reshape", "list", "not_mapping", "float_to_int", "extra")), "kind")
    key = data.draw(st.sampled_from(keys), "key")
    if kind == "drop":
        del mangled[key]
        broken = bad(key, "state_dict", must_raise=False)
    elif kind == "reshape":
        mangled[key] = state[key].reshape(-1)[:-1] if state[key].numel() > 1 else state[key].reshape(1, 1, 1)
        broken = bad(key, "state_dict", must_raise=False)
    elif kind == "list":
        mangled[key] = state[key].tolist()
        broken = bad(key, "state_dict", must_raise=False)
    elif kind == "float_to_int":
        mangled[key] = state[key].long()
        broken = bad(key, "state_dict", must_raise=False)
    elif kind == "not_mapping":
        mangled = list(state.items())
        broken = bad("state_dict")
    elif kind == "extra":
        mangled["optimizer.step"] = torch.zeros(())

    def convert() -> Any:
        converted, shapes = s4.iclrec_to_encoder_state_dict(mangled)
        # the result must load into the encoder the shapes describe
        torch.manual_seed(1)
        target = s4.SASRecEncoder(
            shapes.num_items, hidden_size=shapes.hidden_size, num_layers=shapes.num_layers,
            num_heads=heads, max_len=shapes.max_len,
        )
        target.load_state_dict(converted)
        return converted, shapes, target

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        converted, shapes, target = out
        assert isinstance(shapes, s4.ICLRecShapes)
        if valid:
            assert tuple(shapes) == (n, d, layers, max_len), shapes
            for name, tensor in encoder.state_dict().items():
                assert torch.equal(target.state_dict()[name], tensor), name

    attempt("iclrec_to_encoder_state_dict", convert, check, broken)


# --------------------------------------------------------------------------------------
# next-item losses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ("linear_cross_entropy", "sampled_bce"))
@fuzzes("linear_cross_entropy", "sampled_bce")
@FUZZ
@given(data=st.data())
def test_fuzz_next_item_losses(data: st.DataObject, name: str) -> None:
    m, n, d = data.draw(st.integers(1, 6), "m"), data.draw(st.integers(2, 7), "n"), data.draw(st.integers(1, 5), "d")
    scale = data.draw(st.sampled_from(SCALES), "scale")
    hidden = data.draw(values((m, d), data.draw(dtypes, "hidden_dtype"), scale), "hidden")
    table = data.draw(values((n, d), data.draw(dtypes, "table_dtype"), scale), "table")
    args: dict[str, Any] = {"hidden": hidden, "table": table}
    hypers: dict[str, Any] = {}
    weights = data.draw(st.one_of(st.none(), float_tensors((m,), low=0.0, high=2.0, dtype=torch.float32)), "weights")
    if weights is not None:
        hypers["weights"] = weights
    breakers: dict[str, st.SearchStrategy[tuple[Any, Bad]]] = {
        "hidden": broken_float(hidden, "hidden"), "table": broken_float(table, "table"),
    }
    checks: dict[str, tuple[Callable[[Any], bool | None], tuple[Any, ...]]] = {}
    if name == "linear_cross_entropy":
        args["targets"] = data.draw(long_tensors((m,), 1, n - 1), "targets")
        breakers["targets"] = broken_ids(args["targets"], "targets", n - 1)
        hypers["chunk_size"] = data.draw(st.sampled_from((None, 1, 2, 100)), "chunk_size")
        checks["chunk_size"] = (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1), SIZE_POOL)
    else:
        args["positives"] = data.draw(long_tensors((m,), 0, n - 1), "positives")
        args["negatives"] = data.draw(long_tensors((m,), 0, n - 1), "negatives")
        breakers["positives"] = broken_ids(args["positives"], "positives", n - 1)
        breakers["negatives"] = broken_ids(args["negatives"], "negatives", n - 1)
    if weights is not None:
        breakers["weights"] = st.sampled_from((
            (-weights - 1, bad("weights")), (poison(weights, math.nan, 0), bad("weights")),
            (weights[:-1], bad("weights")), (weights.long(), bad("weights", must_raise=False)),
        ))
    target, value, broken = data.draw(pick(breakers, checks), "broken")
    apply(args, hypers, target, value)
    if target == "hidden" and broken is not None and isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == 0:
        broken = bad("hidden", "targets", "positives", "weights", must_raise=False)
    if target == "table" and broken is not None and isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == 0:
        broken = bad("table", "targets", "positives", "negatives")
    function = getattr(s4, name)

    def run(arguments: dict[str, Any]) -> torch.Tensor:
        return function(*arguments.values(), **hypers)

    def check(loss: Any, must_be_finite: bool, valid: bool) -> None:
        check_tensor(loss, must_be_finite, valid, (), loss_dtype(hidden.dtype, table.dtype))
        if not valid:
            return
        h, e = hidden.double(), table.double()
        w = torch.ones(m, dtype=torch.float64) if weights is None else weights.double()
        logits = h @ e.T
        if name == "linear_cross_entropy":
            logits[:, 0] = -math.inf
            rows = torch.logsumexp(logits, 1) - logits.gather(1, args["targets"][:, None]).squeeze(1)
        else:
            pos = logits.gather(1, args["positives"][:, None]).squeeze(1)
            neg = logits.gather(1, args["negatives"][:, None]).squeeze(1)
            rows = -torch.nn.functional.logsigmoid(pos) - torch.nn.functional.logsigmoid(-neg)
        expected = (w * rows).sum() / w.sum() if float(w.sum()) > 0 else torch.zeros((), dtype=torch.float64)
        largest = max(float(hidden.double().abs().max()), float(table.double().abs().max()))
        assert_close_to_float64(loss, expected, largest**2 * d)

    attempt(name, lambda: run(args), check, broken)


# --------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------


def nearest_check(x: torch.Tensor, centroids: torch.Tensor, assignments: torch.Tensor) -> None:
    """Each point's assigned centroid is (within rounding) its nearest one."""
    distances = torch.cdist(x.double(), centroids.double()) ** 2
    chosen = distances.gather(1, assignments[:, None]).squeeze(1)
    best = distances.min(1).values
    scale = 1e-4 * (1.0 + float(x.double().pow(2).sum(1).max()) + float(centroids.double().pow(2).sum(1).max()))
    assert bool((chosen <= best + scale).all()), (chosen, best)


@pytest.mark.parametrize("mode", ('function', 'module'))
@fuzzes("k_means", "KMeans", "KMeansResult")
@FUZZ
@given(data=st.data())
def test_fuzz_k_means(data: st.DataObject, mode: str) -> None:
    n, d = data.draw(st.integers(1, 12), "n"), data.draw(st.integers(1, 4), "d")
    k = data.draw(st.integers(1, n), "k")
    dtype = data.draw(dtypes, "dtype")
    x = data.draw(values((n, d), dtype), "x")
    args: dict[str, Any] = {"x": x}
    hypers: dict[str, Any] = {"num_iters": data.draw(st.integers(0, 5), "num_iters"), "num_redo": data.draw(st.integers(1, 2), "num_redo")}
    checks: dict[str, tuple[Callable[[Any], bool | None], tuple[Any, ...]]] = {
        "num_iters": (int_at_least(0), SIZE_POOL),
        "num_redo": (int_at_least(1), SIZE_POOL),
        "chunk_size": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1), SIZE_POOL),
        "max_points_per_centroid": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1), SIZE_POOL),
    }
    if mode == "function":
        hypers["generator"] = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    else:
        hypers["seed"] = data.draw(st.integers(0, 2**31), "seed")
    target, value, broken = data.draw(
        pick({"x": broken_float(x, "x", loss=False)}, checks), "broken"
    )
    apply(args, hypers, target, value)
    if target == "x" and broken is not None and isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] < k:
        broken = bad("x", "num_clusters")
    if target is None and data.draw(st.integers(0, 5), "too_many_clusters") == 0:
        k, target, broken = n + 1, "num_clusters", bad("num_clusters", "x")
    num_clusters = k

    def run() -> Any:
        if mode == "function":
            return s4.k_means(args["x"], num_clusters, **hypers)
        model = s4.KMeans(num_clusters, **hypers).fit(args["x"])
        copy = s4.KMeans(num_clusters)
        copy.load_state_dict(model.state_dict())
        assignments = copy.assign(args["x"])
        assert torch.equal(assignments, model(args["x"]))
        return s4.KMeansResult(model.centroids, assignments, torch.zeros(()))

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(out, s4.KMeansResult)
        check_tensor(out.centroids, True, valid, (k, d), loss_dtype(x.dtype))
        check_tensor(out.assignments, True, valid, (n,), torch.long)
        check_tensor(out.inertia, True, valid, (), out.inertia.dtype)
        if valid:
            assert bool(((out.assignments >= 0) & (out.assignments < k)).all())
            if mode == "module" or hypers["num_iters"] >= 0:
                nearest_check(x, out.centroids, out.assignments)
            if mode == "function":
                inertia = (x.double() - out.centroids.double()[out.assignments]).pow(2).sum()
                # float32 distances |x|^2 - 2 x.c + |c|^2 lose about 1e-7 of |x|^2 per point
                atol = 1e-3 + 1e-6 * float(x.double().pow(2).sum())
                torch.testing.assert_close(out.inertia.double(), inertia, rtol=1e-3, atol=atol)

    attempt("KMeans" if mode == "module" else "k_means", run, check, broken)


# --------------------------------------------------------------------------------------
# Ragged
# --------------------------------------------------------------------------------------

rows_lists = st.lists(st.lists(st.integers(0, 9), max_size=5), max_size=6)


@fuzzes("Ragged")
@FUZZ
@given(data=st.data())
def test_fuzz_ragged(data: st.DataObject) -> None:
    rows = data.draw(rows_lists, "rows")
    values_ = torch.tensor([v for row in rows for v in row], dtype=torch.long)
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    build = data.draw(st.sampled_from(("init", "from_lists", "from_lengths", "from_padded")), "build")
    args: dict[str, Any] = {"values": values_, "offsets": offsets, "lengths": lengths}
    target, value, broken = data.draw(
        pick(
            {
                "values": st.sampled_from(((values_.double(), bad("values")), (values_[None], bad("values")), (values_.tolist(), bad("values")))),
                "offsets": st.sampled_from((
                    (offsets.double(), bad("offsets", "lengths")), (offsets + 1, bad("offsets", "lengths")),
                    (offsets.flip(0), bad("offsets", "lengths", must_raise=len(rows) > 0 and int(offsets[-1]) > 0)),
                    (offsets[None], bad("offsets", "lengths")), (offsets[:-1], bad("offsets", "lengths", must_raise=len(rows) == 0 or int(offsets[-2]) != int(offsets[-1]))),
                )),
            },
            {},
        ),
        "broken",
    )
    apply(args, {}, target, value)
    if build in ("from_lists", "from_padded", "from_lengths") and target is not None:
        # from_lists / from_padded take rows only; from_lengths truncates float values and
        # lengths (test_fixed_g4_ragged_builders_refuse_floats, G-4): these cases stay valid
        target, broken = None, None
        args = {"values": values_, "offsets": offsets, "lengths": lengths}

    def run() -> Any:
        if build == "init":
            ragged = s4.Ragged(args["values"], args["offsets"])
        elif build == "from_lists":
            ragged = s4.Ragged.from_lists(rows)
        elif build == "from_lengths":
            ragged = s4.Ragged.from_lengths(args["values"], args["lengths"])
        else:
            width = max(lengths.tolist(), default=0)
            padded = torch.full((len(rows), width), -1, dtype=torch.long)
            for i, row in enumerate(rows):
                if row:
                    padded[i, width - len(row):] = torch.tensor(row)
            ragged = s4.Ragged.from_padded(padded, pad=-1)
        return ragged

    def check(ragged: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(ragged, s4.Ragged)
        if not valid:
            return
        assert ragged.tolist() == rows and ragged.num_rows == len(rows)
        assert ragged.lengths.tolist() == lengths.tolist()
        for i, row in enumerate(rows):
            assert ragged.row(i).tolist() == row
        if rows:
            index = torch.tensor(data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=4), "index"), dtype=torch.long)
            width = data.draw(st.one_of(st.none(), st.integers(0, 6)), "width")
            padded = ragged.pad_rows(index, width, pad=0)
            w = max([len(rows[i]) for i in index.tolist()], default=0) if width is None else width
            expected = [[0] * (w - len(rows[i][-w:] if w else [])) + (rows[i][-w:] if w else []) for i in index.tolist()]
            assert padded.tolist() == expected, (padded, expected)
            start = data.draw(st.integers(0, len(rows)), "start")
            stop = data.draw(st.integers(start, len(rows)), "stop")
            pair_rows, pair_values = ragged.flat_pairs(start, stop)
            pairs = [(r - start, v) for r in range(start, stop) for v in rows[r]]
            assert list(zip(pair_rows.tolist(), pair_values.tolist())) == pairs
            queries = data.draw(st.lists(st.tuples(st.integers(0, len(rows) - 1), st.integers(0, 9)), max_size=6), "queries")
            q_rows = torch.tensor([q[0] for q in queries], dtype=torch.long)
            q_values = torch.tensor([q[1] for q in queries], dtype=torch.long)
            found = ragged.contains(q_rows, q_values, keys=ragged.sorted_keys(9), num_values=9)
            assert found.tolist() == [v in rows[r] for r, v in queries]

    attempt("Ragged", run, check, broken)


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------


def reference_ranks(
    scores: torch.Tensor, targets: list[int], history: list[list[int]] | None, ignore: list[int], history_value: float | None
) -> list[int]:
    """The rank formula of ``rank_targets``' docstring, one row and one item at a time."""
    out = []
    for row, target in enumerate(targets):
        s = scores[row].clone()
        candidates = set(range(s.numel())) - set(ignore)
        if history is not None:
            seen = {v for v in history[row] if v != 0}
            if history_value is None:
                candidates -= seen - {target}
            else:
                for v in seen:
                    s[v] = history_value
        st_ = s[target]
        out.append(sum(1 for j in candidates if s[j] > st_ or (j < target and s[j] == st_)))
    return out


@st.composite
def ranking_inputs(draw: st.DrawFn) -> dict[str, Any]:
    b, n = draw(st.integers(1, 5)), draw(st.integers(2, 9))
    dtype = draw(dtypes)
    levels = st.sampled_from((-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, math.inf, -math.inf, math.nan))
    raw = draw(st.lists(st.lists(levels, min_size=n, max_size=n), min_size=b, max_size=b))
    scores = torch.tensor(raw, dtype=torch.float64).to(dtype)
    ignore = draw(st.lists(st.integers(-1, n + 1), max_size=4))
    allowed = [j for j in range(n) if j not in ignore]
    if not allowed:
        ignore = []
        allowed = list(range(n))
    targets = draw(st.lists(st.sampled_from(allowed), min_size=b, max_size=b))
    for row, target in enumerate(targets):
        if math.isnan(float(scores[row, target])):
            scores[row, target] = 0.0  # a NaN target score is an error, drawn separately
    history = draw(st.one_of(st.none(), st.lists(st.lists(st.integers(0, n - 1), max_size=4), min_size=b, max_size=b)))
    history_value = draw(st.sampled_from((None, None, 0.0, -1.0)))
    return {"b": b, "n": n, "scores": scores, "targets": targets, "ignore": ignore, "history": history,
            "history_value": history_value}


def history_as(history: list[list[int]] | None, form: str) -> Any:
    if history is None:
        return None
    if form == "ragged":
        return s4.Ragged.from_lists(history)
    width = max((len(h) for h in history), default=0)
    return torch.tensor([[0] * (width - len(h)) + h for h in history], dtype=torch.long).reshape(len(history), width)


@fuzzes("rank_targets")
@FUZZ
@given(data=st.data())
def test_fuzz_rank_targets(data: st.DataObject) -> None:
    case = data.draw(ranking_inputs(), "case")
    b, n = case["b"], case["n"]
    form = data.draw(st.sampled_from(("ragged", "padded")), "form")
    args: dict[str, Any] = {
        "scores": case["scores"], "targets": torch.tensor(case["targets"]), "exclude": history_as(case["history"], form),
    }
    hypers: dict[str, Any] = {"ignore_ids": tuple(case["ignore"]), "history_value": case["history_value"]}
    target_ids = args["targets"]
    breakers: dict[str, st.SearchStrategy[tuple[Any, Bad]]] = {
        "scores": st.sampled_from((
            (case["scores"].long(), bad("scores")), (case["scores"][None], bad("scores")),
            (case["scores"][:, :0], bad("scores", "targets")),
            (case["scores"].tolist(), bad("scores")),
        )),
        "targets": broken_ids(target_ids, "targets", n - 1),
    }
    if case["history"] is not None:
        if form == "padded":
            # exclude=None is valid (no history to leave out), so it is not one of the broken forms
            breakers["exclude"] = broken_ids(args["exclude"], "exclude", n - 1).filter(lambda vb: vb[0] is not None)
        else:
            breakers["exclude"] = st.just((s4.Ragged.from_lists(case["history"][:-1]), bad("exclude")))
    target, value, broken = data.draw(
        pick(breakers, {"ignore_ids": (lambda v: v is not None and all(isinstance(i, int) and not isinstance(i, bool) for i in v) and not set(v) & set(case["targets"]), ((0, 0), (math.nan,), ("0",), None, (True,), tuple(case["targets"][:1]), (-5, 10**6))),
                        "history_value": (lambda v: v is None or (is_real(v) and not math.isnan(v)), (None, 0.0, math.nan, "0", True, math.inf))}),
        "broken",
    )
    apply(args, hypers, target, value)
    if target == "ignore_ids" and broken is not None:
        broken = bad("ignore_ids", "targets")
    if target == "history_value" and value is math.inf:
        broken = bad("history_value", must_raise=False)
    if target == "targets" and broken is not None and isinstance(value, torch.Tensor) and value.dim() == 1 and not value.is_floating_point():
        if set(value.tolist()) & set(hypers["ignore_ids"]):
            broken = bad("targets", "ignore_ids")
    if target is None and data.draw(st.integers(0, 6), "nan_target") == 0:
        args["scores"] = case["scores"].clone()
        args["scores"][0, case["targets"][0]] = math.nan
        target, broken = "scores", bad("scores")
        replaced = case["history"] is not None and case["targets"][0] in set(case["history"][0]) - {0}
        if hypers["history_value"] is not None and replaced:
            broken = None  # documented: a target in the history is scored history_value, NaN or not
            case["scores"] = args["scores"]

    def check(ranks: Any, must_be_finite: bool, valid: bool) -> None:
        check_tensor(ranks, True, valid, (b,), torch.long)
        if valid:
            expected = reference_ranks(args["scores"], case["targets"], case["history"], list(hypers["ignore_ids"]),
                                       None if hypers["history_value"] is None else float(torch.tensor(hypers["history_value"], dtype=args["scores"].dtype)))
            assert ranks.tolist() == expected, (ranks.tolist(), expected)

    attempt("rank_targets", lambda: s4.rank_targets(args["scores"], args["targets"], exclude=args["exclude"], **hypers), check, broken)


def reference_metrics(ranks: list[int], ks: tuple[int, ...]) -> dict[str, float]:
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(r < k for r in ranks) / len(ranks)
        out[f"NDCG@{k}"] = sum(1 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return out


@fuzzes("ranking_metrics")
@FUZZ
@given(data=st.data())
def test_fuzz_ranking_metrics(data: st.DataObject) -> None:
    ranks = data.draw(st.lists(st.integers(0, 30), min_size=1, max_size=12), "ranks")
    args: dict[str, Any] = {"ranks": torch.tensor(ranks)}
    hypers: dict[str, Any] = {"ks": tuple(data.draw(st.lists(st.integers(1, 25), min_size=1, max_size=3, unique=True), "ks"))}
    target, value, broken = data.draw(
        pick(
            {"ranks": st.sampled_from((
                (args["ranks"].double(), bad("ranks")), (args["ranks"][None], bad("ranks")),
                (args["ranks"][:0], bad("ranks")), (poison(args["ranks"], -1, 0), bad("ranks")), (ranks, bad("ranks")),
            ))},
            {"ks": (lambda v: isinstance(v, tuple) and len(v) > 0 and len(set(v)) == len(v) and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v) or None if isinstance(v, list) else isinstance(v, tuple) and len(v) > 0 and len(set(v)) == len(v) and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v), ((5, 5), (0,), (), (1.5,), (True,), None, 5, (10, 1)))},
        ),
        "broken",
    )
    apply(args, hypers, target, value)
    if target == "ks" and value == 5:
        broken = bad("ks")

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(out, dict)
        if valid:
            expected = reference_metrics(ranks, hypers["ks"])
            assert list(out) == list(expected)
            for key in expected:
                assert math.isclose(out[key], expected[key], rel_tol=1e-9, abs_tol=1e-12), (key, out, expected)

    attempt("ranking_metrics", lambda: s4.ranking_metrics(args["ranks"], **hypers), check, broken)


@fuzzes("evaluate_ranking", "RankingResult")
@FUZZ
@given(data=st.data())
def test_fuzz_evaluate_ranking(data: st.DataObject) -> None:
    case = data.draw(ranking_inputs(), "case")
    b, n = case["b"], case["n"]
    scores = case["scores"]
    inputs = torch.arange(b)[:, None]
    form = data.draw(st.sampled_from(("ragged", "padded")), "form")
    args: dict[str, Any] = {"inputs": inputs, "targets": torch.tensor(case["targets"]), "history": history_as(case["history"], form)}
    hypers: dict[str, Any] = {
        "batch_size": data.draw(st.integers(1, 4), "batch_size"), "ignore_ids": tuple(case["ignore"]),
        "history_value": case["history_value"], "ks": (1, 3),
        "memory_budget": data.draw(st.sampled_from((None, 1, 64, 10**9)), "memory_budget"),
    }
    output = data.draw(st.sampled_from(("good", "good", "good", "int", "wrong_n", "1d", "list")), "output")

    def score_fn(x: torch.Tensor) -> Any:
        rows = scores[x[:, 0]]
        if output == "int":
            return rows.long()
        if output == "wrong_n":
            return rows[:, : n - 1] if x[0, 0] == 0 else rows
        if output == "1d":
            return rows[:, 0]
        if output == "list":
            return rows.tolist()
        return rows

    broken: Bad | None = None if output == "good" else bad("score_fn", "scores")
    if output == "wrong_n":  # fewer columns: targets or history ids may now be out of range
        broken = bad("score_fn", "scores", "targets", "history")
    if output == "wrong_n" and (b == 1 or (b <= hypers["batch_size"] and hypers["memory_budget"] in (None, 10**9))):
        broken = bad("score_fn", "scores", "targets", "history", must_raise=False)  # one call
    target: str | None = None
    if broken is None:
        target, value, broken = data.draw(
            pick(
                {"inputs": st.sampled_from(((inputs.double(), bad("inputs")), (inputs[:, 0], bad("inputs")))),
                 "targets": broken_ids(args["targets"], "targets", n - 1)},
                {"batch_size": (int_at_least(1), SIZE_POOL),
                 "memory_budget": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1), SIZE_POOL)},
            ),
            "broken",
        )
        apply(args, hypers, target, value)
    if target == "targets" and broken is not None and isinstance(value, torch.Tensor) and value.dim() == 1 and not value.is_floating_point():
        if set(value.tolist()) & set(hypers["ignore_ids"]):
            broken = bad("targets", "ignore_ids")
        if value.dim() == 1 and value.shape[0] != b:
            broken = bad("targets", "inputs")
    if target == "targets" and isinstance(value, torch.Tensor) and value.dim() == 2:
        broken = bad("targets", "inputs")

    def run() -> Any:
        return s4.evaluate_ranking(score_fn, args["inputs"], args["targets"], history=args["history"], **hypers)

    def check(result: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(result, s4.RankingResult)
        if not valid:
            return
        expected = s4.rank_targets(scores, args["targets"], exclude=args["history"], ignore_ids=hypers["ignore_ids"],
                                   history_value=hypers["history_value"])
        assert torch.equal(result.ranks, expected), (result.ranks, expected)
        assert result.metrics == pytest.approx(reference_metrics(expected.tolist(), (1, 3)))
        assert result.subset(torch.ones(b, dtype=torch.bool)) == pytest.approx(result.metrics)
        per_user = result.per_user()
        assert all(isinstance(v, torch.Tensor) and v.shape == (b,) for v in per_user.values())

    attempt("evaluate_ranking", run, check, broken)


# --------------------------------------------------------------------------------------
# data: datasets, splits, readers, synthetic data, downloads; the validation switch
# --------------------------------------------------------------------------------------


def left_pad(row: list[int], width: int) -> list[int]:
    row = row[-width:] if width else []
    return [0] * (width - len(row)) + row


sequences_lists = st.lists(st.lists(st.integers(1, 12), min_size=3, max_size=9), min_size=1, max_size=6)


@fuzzes("SequenceDataset", "LeaveOneOutSplit")
@FUZZ
@given(data=st.data())
def test_fuzz_sequence_dataset_and_split(data: st.DataObject) -> None:
    sequences = data.draw(sequences_lists, "sequences")
    items = torch.tensor([v for s in sequences for v in s])
    offsets = torch.tensor([0] + [sum(len(s) for s in sequences[: i + 1]) for i in range(len(sequences))])
    args: dict[str, Any] = {"items": items, "offsets": offsets}
    hypers: dict[str, Any] = {"max_len": data.draw(st.integers(1, 10), "max_len")}
    short = [sequences[0][:2]] + sequences[1:]
    target, value, broken = data.draw(
        pick(
            {
                "items": st.sampled_from((
                    (items.double(), bad("items")), (items[None], bad("items")), (poison(items, 0, 0), bad("items")),
                    (poison(items, -3, 0), bad("items")), (items.tolist(), bad("items")),
                )),
                "offsets": st.sampled_from((
                    (offsets.double(), bad("offsets")), (offsets + 1, bad("offsets")), (offsets[:-1], bad("offsets")),
                    (offsets.flip(0), bad("offsets")), (None, bad("offsets")),
                )),
                "sequences": st.just((short, bad("sequences", "user", "items", "offsets"))),
            },
            {"max_len": (int_at_least(1), SIZE_POOL)},
        ),
        "broken",
    )
    via = data.draw(st.sampled_from(("init", "from_sequences")), "via")
    if target == "sequences":
        via = "from_sequences"
    elif target in ("items", "offsets"):
        via = "init"
    apply(args, hypers, target if target != "sequences" else None, value)
    rows = short if target == "sequences" else sequences
    split_name = data.draw(st.sampled_from(("valid", "test")), "split")

    def run() -> Any:
        if via == "init":
            dataset = s4.SequenceDataset(args["items"], args["offsets"])
        else:
            dataset = s4.SequenceDataset.from_sequences(rows)
        split = dataset.split(hypers["max_len"])
        return dataset, split, split.to("cpu")

    def check(out: Any, must_be_finite: bool, valid: bool) -> None:
        dataset, split, moved = out
        assert isinstance(dataset, s4.SequenceDataset) and isinstance(split, s4.LeaveOneOutSplit)
        if not valid:
            return
        width = hypers["max_len"]
        assert [dataset.sequence(u).tolist() for u in range(len(sequences))] == sequences
        assert dataset.num_items == max(items.tolist())
        train = [s[:-2] for s in sequences]
        assert split.train_inputs.tolist() == [left_pad(t[:-1], width) for t in train]
        assert split.train_targets.tolist() == [left_pad(t[1:], width) for t in train]
        assert split.valid_inputs.tolist() == [left_pad(s[:-2], width) for s in sequences]
        assert split.test_inputs.tolist() == [left_pad(s[:-1], width) for s in sequences]
        assert split.valid_targets.tolist() == [s[-2] for s in sequences]
        assert split.test_targets.tolist() == [s[-1] for s in sequences]
        assert split.valid_history.tolist() == [s[:-2] for s in sequences]
        assert split.test_history.tolist() == [s[:-1] for s in sequences]
        assert split.user_items.tolist() == sequences
        cut = -1 if split_name == "test" else -2
        assert split.inputs(split_name).tolist() == [left_pad(s[:cut], width) for s in sequences]
        assert split.targets(split_name).tolist() == [s[cut] for s in sequences]
        assert split.history(split_name).tolist() == [s[:cut] for s in sequences]
        assert torch.equal(moved.test_inputs, split.test_inputs)

    attempt("SequenceDataset", run, check, broken)
    bad_name = data.draw(st.sampled_from(("train", "", None, 1, "TEST")), "bad_split")
    split = s4.SequenceDataset.from_sequences(sequences).split(3)
    attempt("LeaveOneOutSplit", lambda: split.inputs(bad_name), lambda *a: None, bad("split"))


@st.composite
def sequence_files(draw: st.DrawFn) -> tuple[str, list[list[int]] | None]:
    """Text of a one-line-per-user file and its sequences (None: the file is malformed)."""
    sequences = draw(st.lists(st.lists(st.integers(1, 9), min_size=3, max_size=6), min_size=1, max_size=4))
    lines = [" ".join(str(v) for v in [user + 1] + seq) for user, seq in enumerate(sequences)]
    defect = draw(st.sampled_from((None, None, "word", "float", "zero", "short", "dup_user", "huge_user", "nul", "blank", "tabs", "negative")))
    line = draw(st.integers(0, len(lines) - 1))
    valid: list[list[int]] | None = None
    if defect == "word":
        lines[line] += " apple"
    elif defect == "float":
        lines[line] += " 1.5"
    elif defect == "zero":
        lines[line] += " 0"
    elif defect == "negative":
        lines[line] += " -4"
    elif defect == "short":
        lines[line] = lines[line].split()[0] + " 1 2"
    elif defect == "dup_user" and len(lines) > 1:
        lines[line] = "1" + lines[line][len(lines[line].split()[0]):]
        if line == 0:
            valid = sequences
    elif defect == "huge_user":
        lines[line] = str(2**64) + lines[line][len(lines[line].split()[0]):]
    elif defect == "nul":
        lines[line] += " \x00"
    elif defect in ("blank", "tabs", None) or (defect == "dup_user" and len(lines) == 1):
        if defect == "blank":
            lines.insert(line, "   ")
        if defect == "tabs":
            lines[line] = lines[line].replace(" ", "\t")
        valid = sequences
    return "\n".join(lines) + "\n", valid


@fuzzes("load_sequences")
@FUZZ
@given(case=sequence_files(), reindex=st.sampled_from(("auto", "always", "never")))
def test_fuzz_load_sequences(case: tuple[str, list[list[int]] | None], reindex: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    text, sequences = case
    path = tmp_path_factory.mktemp("seq") / "fuzz.txt"
    path.write_text(text, encoding="utf-8")
    broken = None if sequences is not None else bad("fuzz.txt")

    def check(dataset: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(dataset, s4.SequenceDataset)
        if not valid:
            return
        raw = [[int(dataset.item_ids[v - 1]) if dataset.item_ids else v for v in dataset.sequence(u).tolist()]
               for u in range(len(dataset))]
        assert raw == sequences

    attempt("load_sequences", lambda: s4.load_sequences(path, reindex=reindex), check, broken)


@st.composite
def inter_files(draw: st.DrawFn) -> tuple[str, dict[str, list[str]] | None]:
    """A RecBole ``.inter`` file and each kept user's items in time order (None: malformed)."""
    users = draw(st.lists(st.sampled_from("abc"), min_size=3, max_size=12))
    items = draw(st.lists(st.sampled_from(["x", "y", "z", "w", "17", "1099511627776"]), min_size=len(users), max_size=len(users)))
    times = draw(st.lists(st.integers(0, 2**62).map(lambda t: t + 2**62), min_size=len(users), max_size=len(users), unique=True))
    rows = [f"{u}\t{i}\t{t}" for u, i, t in zip(users, items, times)]
    defect = draw(st.sampled_from((None, None, "inf_time", "nan_time", "fields", "empty_item", "header")))
    line = draw(st.integers(0, len(rows) - 1))
    header = "user_id:token\titem_id:token\ttimestamp:float"
    if defect == "inf_time":
        rows[line] = f"{users[line]}\t{items[line]}\tinf"
    elif defect == "nan_time":
        rows[line] = f"{users[line]}\t{items[line]}\tnan"
    elif defect == "fields":
        rows[line] += "\textra"
    elif defect == "empty_item":
        rows[line] = f"{users[line]}\t\t{times[line]}"
    elif defect == "header":
        header = "user\titem"
    text = "\n".join([header] + rows) + "\n"
    if defect is not None:
        return text, None
    per_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for u, i, t in zip(users, items, times):
        per_user[u].append((t, i))
    kept = {u: [i for _, i in sorted(v)] for u, v in per_user.items() if len(v) >= 3}
    return text, kept


@fuzzes("load_recbole_inter")
@FUZZ
@given(case=inter_files())
def test_fuzz_load_recbole_inter(case: tuple[str, dict[str, list[str]] | None], tmp_path_factory: pytest.TempPathFactory) -> None:
    text, kept = case
    path = tmp_path_factory.mktemp("inter") / "fuzz.inter"
    path.write_text(text, encoding="utf-8")
    broken = None if kept else bad("fuzz.inter")

    def check(dataset: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(dataset, s4.SequenceDataset)
        if valid:
            got = [[dataset.item_ids[v - 1] for v in dataset.sequence(u).tolist()] for u in range(len(dataset))]
            # timestamps above 2**62 sort exactly (issue 9: integers stay integers)
            assert sorted(got) == sorted(kept.values()), (got, kept)

    attempt("load_recbole_inter", lambda: s4.load_recbole_inter(path), check, broken)


@fuzzes("generate_synthetic")
@FUZZ
@given(data=st.data())
def test_fuzz_generate_synthetic(data: st.DataObject) -> None:
    hypers: dict[str, Any] = {
        "num_users": data.draw(st.integers(1, 20), "num_users"), "num_items": data.draw(st.integers(4, 30), "num_items"),
        "num_intents": data.draw(st.integers(1, 4), "num_intents"), "seed": data.draw(st.integers(0, 2**31), "seed"),
        "min_length": 3, "max_length": data.draw(st.integers(3, 12), "max_length"),
    }
    target, value, broken = data.draw(
        pick({}, {
            "num_users": (int_at_least(1), SIZE_POOL), "num_intents": (int_at_least(1, 4), SIZE_POOL),
            "min_length": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 3 <= v <= hypers["max_length"], SIZE_POOL),
            "mean_extra_length": (positive_real, REAL_POOL), "follow_prob": (probability, REAL_POOL),
            "switch_prob": (probability, REAL_POOL),
            "popularity_skew": (lambda v: is_real(v) and math.isfinite(v) and v >= 1, REAL_POOL),
        }),
        "broken",
    )
    apply({}, hypers, target, value)
    if target == "min_length" and broken is not None:
        broken = bad("min_length", "max_length")

    def check(dataset: Any, must_be_finite: bool, valid: bool) -> None:
        assert isinstance(dataset, s4.SequenceDataset)
        if valid:
            assert len(dataset) == hypers["num_users"] and dataset.num_items == hypers["num_items"]
            lengths = dataset.lengths
            assert bool(((lengths >= hypers["min_length"]) & (lengths <= hypers["max_length"])).all())

    attempt("generate_synthetic", lambda: s4.generate_synthetic(**hypers), check, broken)


@fuzzes("download_dataset")
@FUZZ
@given(data=st.data())
def test_fuzz_download_dataset(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Offline: a ``file://`` mirror; wrong or missing checksums, bad names and types."""
    import hashlib

    folder = tmp_path_factory.mktemp("download")
    sequences = data.draw(st.lists(st.lists(st.integers(1, 9), min_size=3, max_size=5), min_size=1, max_size=3), "sequences")
    content = ("\n".join(" ".join(map(str, [u + 1] + s)) for u, s in enumerate(sequences)) + "\n").encode()
    source = folder / "mirror.txt"
    source.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    args: dict[str, Any] = {"name": "Beauty", "root": folder / "cache", "url": source.as_uri(), "sha256": digest}
    wrong = hashlib.sha256(content + b"x").hexdigest()
    target = data.draw(st.sampled_from((None, None, "name", "sha256_wrong", "sha256_bad", "no_sha", "url_type", "truncate")), "target")
    broken: Bad | None = None
    if target == "name":
        args["name"] = data.draw(st.sampled_from(("beauty", "", None, 3, "../Beauty")))
        broken = bad("name")
    elif target == "sha256_wrong":
        args["sha256"] = wrong
        broken = Bad(("sha256", "SHA-256", "checksum", "Beauty.txt"), errors=(RuntimeError, ValueError))
    elif target == "sha256_bad":
        args["sha256"] = data.draw(st.sampled_from(("abc", digest[:-1] + "g", 5, "")))
        broken = bad("sha256")
    elif target == "no_sha":
        args["sha256"] = None
        broken = bad("sha256", "allow_unverified", "url")
    elif target == "url_type":
        args["url"] = 5
        broken = bad("url")

    def run() -> Any:
        path = s4.download_dataset(**args)
        if target == "truncate":  # a cached file cut short is checked on the next use
            path.write_bytes(content[:-2])
            return s4.download_dataset(**args)
        return path

    if target == "truncate":
        broken = Bad(("sha256", "SHA-256", "checksum", "Beauty.txt"), errors=(RuntimeError, ValueError))

    def check(path: Any, must_be_finite: bool, valid: bool) -> None:
        assert path.read_bytes() == content

    attempt("download_dataset", run, check, broken)


@fuzzes("set_validate_args", "validate_args_enabled")
@FUZZ
@given(value=st.sampled_from((True, False, 0, 1, None, "False", 1.0, torch.tensor(True))))
def test_fuzz_validation_switch(value: Any) -> None:
    def run() -> bool:
        set_validate_args(value)
        return s4.validate_args_enabled()

    def check(state: Any, must_be_finite: bool, valid: bool) -> None:
        assert state is value

    attempt("set_validate_args", run, check, None if isinstance(value, bool) else bad("enabled"))
    FIGURES["validate_args_enabled"]["inputs"] += 1
    assert isinstance(s4.validate_args_enabled(), bool)
    FIGURES["validate_args_enabled"]["results"] += 1


# --------------------------------------------------------------------------------------
# Coverage of the public API, the validation switch, fixed bugs, issue 9's reproducers
# --------------------------------------------------------------------------------------

NOT_CALLABLE_API = {"Pooling"}
"""Public names that are type aliases (``typing.Literal``), not callables to fuzz."""


def test_every_public_callable_has_a_fuzz_entry() -> None:
    public = set()
    for name in s4.__all__:
        value = getattr(s4, name)
        is_exception = isinstance(value, type) and issubclass(value, BaseException)  # raised, not called
        if callable(value) and typing.get_origin(value) is None and name not in NOT_CALLABLE_API and not is_exception:
            public.add(name)
    missing = sorted(public - set(ENTRIES))
    assert not missing, f"public callables without a fuzz entry in tests/test_fuzz.py: {missing}"
    assert not set(ENTRIES) - set(s4.__all__), sorted(set(ENTRIES) - set(s4.__all__))
    for name in NOT_CALLABLE_API:
        assert typing.get_origin(getattr(s4, name)) is typing.Literal


OUT_OF_RANGE_CALLS: dict[str, Callable[[], Any]] = {
    "SASRecEncoder.forward": lambda: s4.SASRecEncoder(5, hidden_size=4, max_len=3)(torch.tensor([[1, 2, 9]])),
    "SASRecEncoder.embed_items": lambda: s4.SASRecEncoder(5, hidden_size=4).embed_items(torch.tensor([-1])),
    "mask_items": lambda: s4.mask_items(torch.tensor([[1, 2, 60]]), num_items=5),
    "insert_items": lambda: s4.insert_items(torch.tensor([[1, 2, 60]]), num_items=5),
    "intent_info_nce": lambda: s4.intent_info_nce(
        torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 7])
    ),
    "prototype_distillation": lambda: s4.prototype_distillation(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 7])),
    "head_tail_adversarial_loss": lambda: s4.head_tail_adversarial_loss(
        torch.ones(2, 3), torch.tensor([0, 5]), torch.ones(2, 3)
    ),
    "rank_targets": lambda: s4.rank_targets(torch.zeros(2, 4), torch.tensor([1, 9])),
    "SequenceDataset": lambda: s4.SequenceDataset(torch.tensor([1, 2, -3]), torch.tensor([0, 3])),
}


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE_CALLS))
def test_validation_on_out_of_range_ids_raise(name: str) -> None:
    """With value checks on (the default), ids out of range raise a clear ValueError."""
    attempt(name.split(".")[0], OUT_OF_RANGE_CALLS[name], lambda *a: None, Bad(("must lie in", "must be ids", "must be item ids"), errors=(ValueError,)))


# Built once, off the training path: a dataset checks its ids whatever the switch says.
ALWAYS_CHECKED = {"SequenceDataset"}


@pytest.mark.parametrize("name", sorted(set(OUT_OF_RANGE_CALLS) - ALWAYS_CHECKED))
def test_validation_off_skips_the_range_check(name: str) -> None:
    """Documented: with ``set_validate_args(False)`` value checks are skipped, so ids out of
    range are not refused by the library (no ValueError); the call may return garbage or fail
    inside torch (an IndexError or RuntimeError on the CPU, a device-side assert on CUDA)."""
    set_validate_args(False)
    try:
        OUT_OF_RANGE_CALLS[name]()
    except (IndexError, RuntimeError):  # torch's own failure, not the library's check
        pass


@pytest.mark.parametrize("name", sorted(ALWAYS_CHECKED))
def test_datasets_check_their_ids_with_validation_off(name: str) -> None:
    set_validate_args(False)
    with pytest.raises(ValueError, match="must be ids"):
        OUT_OF_RANGE_CALLS[name]()


# Bugs the fuzzing found (G-1 .. G-5), each fixed and kept as a regression test of its
# reproducer. A bug found later and not yet fixed gets a test marked with ``known_bug`` above
# (``xfail(strict=True)``), so that its fix makes the test fail until the mark is removed.


def test_fixed_g1_augmenter_operations_not_a_sequence() -> None:
    """G-1 (fixed): a raw 'NoneType' object is not iterable."""
    for value in (None, 3):
        with pytest.raises(TypeError, match="operations"):
            s4.SequenceAugmenter(5, operations=value)


def test_fixed_g2_sinkhorn_rows_keep_float32_precision() -> None:
    """G-2 (fixed): the rows summed to 1.0017 for these scores."""
    q = s4.sinkhorn_knopp(torch.tensor([[0.0, 0.0], [328.0, 328.0]]), num_iters=1, epsilon=0.01)
    torch.testing.assert_close(q.sum(1), torch.ones(2), atol=1e-5, rtol=0)


def test_fixed_g3_iclrec_export_refuses_any_other_module() -> None:
    """G-3 (fixed): a Linear was exported as if it were an ICLRec state dict."""
    with pytest.raises((TypeError, ValueError), match="encoder|missing"):
        s4.encoder_to_iclrec_state_dict(torch.nn.Linear(2, 2))


def test_fixed_g4_ragged_builders_refuse_floats() -> None:
    """G-4 (fixed): floats were truncated to ints silently."""
    with pytest.raises(TypeError, match="values"):
        s4.Ragged.from_lengths(torch.tensor([1.5]), torch.tensor([1]))
    with pytest.raises(TypeError, match="rows"):
        s4.Ragged.from_lists([[1.5]])
    with pytest.raises(TypeError, match="padded"):
        s4.Ragged.from_padded(torch.tensor([[0.0, 1.5]]))


def test_fixed_g4_ragged_methods_name_the_bad_argument() -> None:
    """G-4 (fixed): raw IndexError / RuntimeError / AttributeError, and row(-1) was empty."""
    ragged = s4.Ragged.from_lists([[1], [2]])
    assert ragged.row(-1).tolist() == [2]
    for call, name in (
        (lambda: s4.Ragged.from_lengths([1, 2], torch.tensor([2])), "values"),
        (lambda: ragged.row(5), "index"),
        (lambda: ragged.pad_rows(torch.tensor([3])), "index"),
        (lambda: ragged.pad_rows(torch.tensor([0]), -1), "width"),
        (lambda: ragged.flat_pairs(2, 1), "start"),
        (lambda: ragged.flat_pairs(0, 9), "stop"),
    ):
        with pytest.raises((TypeError, ValueError), match=name):
            call()


def test_fixed_g5_augment_num_items_beyond_int64() -> None:
    """G-5 (fixed): raw overflow errors from torch instead of a ValueError naming num_items."""
    ids = torch.tensor([[1, 2]])
    for call in (
        lambda: s4.mask_items(ids, num_items=2**63),
        lambda: s4.insert_items(ids, num_items=2**63),
        lambda: s4.SequenceAugmenter(10**30),
    ):
        with pytest.raises(ValueError, match="num_items"):
            call()


# Issue 9's one-line reproducers of the library (the command-line ones are in tests/test_example*.py).


def test_issue9_repeated_ignore_ids() -> None:
    ranks = s4.rank_targets(torch.tensor([[9.0, 1.0, 4.0, 3.0]]), torch.tensor([3]), ignore_ids=(0, 0))
    assert ranks.tolist() == [1]


def test_issue9_mixed_dtypes_promote() -> None:
    z = torch.randn(4, 16)
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.isfinite(s4.HeadTailAdversary(16)(z.half(), labels).loss)
    assert torch.isfinite(s4.OnlineIntentClustering(16, 8)(z.double()).loss)
    encoder = s4.SASRecEncoder(10, hidden_size=16)
    assert encoder.score_items(z.double()).dtype == torch.float64


def test_issue9_fp16_contrastive_at_low_temperature() -> None:
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(256, 128, generator=generator).half()
    z2 = torch.randn(256, 128, generator=generator).half()
    loss = s4.intent_info_nce(z1, z2, temperature=1e-3)
    reference = s4.intent_info_nce(z1.double(), z2.double(), temperature=1e-3)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-4, atol=1.0)


def test_issue9_fp16_clustering_of_a_zero_row() -> None:
    z = torch.randn(4, 16).half()
    z[1] = 0
    out = s4.online_clustering(z, torch.randn(8, 16).half())
    assert bool(torch.isfinite(out.loss)) and bool(torch.isfinite(out.targets).all())


def test_issue9_right_padded_input_is_refused() -> None:
    encoder = s4.SASRecEncoder(10, hidden_size=8, max_len=4)
    with pytest.raises(ValueError, match="item_ids"):
        encoder.represent(torch.tensor([[1, 2, 0, 0]]))


def test_issue9_huge_sparse_item_id(tmp_path: Any) -> None:
    path = tmp_path / "huge.txt"
    path.write_text("2 2 3 1099511627776\n")
    dataset = s4.load_sequences(path)
    assert dataset.num_items == 3 and dataset.item_ids == ["2", "3", "1099511627776"]


def test_issue9_timestamps_above_2_53_and_inf(tmp_path: Any) -> None:
    path = tmp_path / "t.inter"
    big = 2**53
    path.write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        f"a\tx\t{big + 2}\na\ty\t{big + 1}\na\tz\t{big}\n"
    )
    assert [s4.load_recbole_inter(path).item_ids[v - 1] for v in s4.load_recbole_inter(path).sequence(0).tolist()] == ["z", "y", "x"]
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\na\tx\tinf\na\ty\t1\na\tz\t2\n")
    with pytest.raises(ValueError, match=r"t\.inter.*line 2|line 2.*t\.inter"):
        s4.load_recbole_inter(path)
