"""The global validation switch and the shared checkers (issue 12), with hypothesis over bad values.

Every hyper-parameter of the library goes through ``check_real`` / ``check_int`` /
``check_bool`` / ``check_choice``: they refuse ``bool``, ``str``, NaN and infinities with a
message naming the argument. Value checks (``check_range`` and the modules' finiteness
checks) run only while ``set_validate_args(True)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from strategies import examples

import s4rec_components as s4
from s4rec_components._validation import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_probability,
    check_range,
    check_real,
    check_same_device,
)


@pytest.fixture(autouse=True)
def _validation_on() -> Iterator[None]:
    """Every test starts and ends with value checks on (the default)."""
    s4.set_validate_args(True)
    yield
    s4.set_validate_args(True)


# Values that are never a real number / an int / a bool.
strings = st.text(max_size=8)
bools = st.booleans()
non_finite = st.sampled_from([math.inf, -math.inf, math.nan])
not_numbers = st.one_of(strings, st.none(), st.lists(st.floats(), max_size=2), st.binary(max_size=4))


# ----------------------------------------------------------------------------- the switch


def test_switch_toggles_and_is_exported():
    assert s4.validate_args_enabled() is True
    s4.set_validate_args(False)
    assert s4.validate_args_enabled() is False
    s4.set_validate_args(True)
    assert s4.validate_args_enabled() is True


@given(value=st.one_of(st.integers(), st.floats(), strings, st.none()))
def test_switch_accepts_only_bools(value):
    with pytest.raises(TypeError, match="enabled must be a bool"):
        s4.set_validate_args(value)
    assert s4.validate_args_enabled() is True  # unchanged


@given(outer=st.booleans(), inner=st.lists(st.booleans(), min_size=1, max_size=4))
def test_switch_as_a_context_manager_restores_the_setting_it_found(outer, inner):
    """``with set_validate_args(x)`` sets ``x`` inside and puts back what it found, nested
    blocks included, and also when the block raises; a plain call keeps its effect."""
    s4.set_validate_args(outer)
    try:

        def nest(values: list[bool]) -> None:
            found = s4.validate_args_enabled()
            with s4.set_validate_args(values[0]) as entered:
                assert entered is None
                assert s4.validate_args_enabled() is values[0]
                if values[1:]:
                    nest(values[1:])
                assert s4.validate_args_enabled() is values[0]
            assert s4.validate_args_enabled() is found

        nest(inner)
        assert s4.validate_args_enabled() is outer
        with pytest.raises(RuntimeError, match="inside"):
            with s4.set_validate_args(not outer):
                raise RuntimeError("inside")
        assert s4.validate_args_enabled() is outer
        switch = s4.set_validate_args(not outer)  # a call: in force at once, and it stays
        assert s4.validate_args_enabled() is (not outer)
        assert repr(switch) == f"set_validate_args(enabled={not outer})"
    finally:
        s4.set_validate_args(True)


def test_switch_as_a_context_manager_skips_value_checks_only_inside():
    x = torch.tensor([0, 7])
    with s4.set_validate_args(False):
        check_range(x, 0, 3, "ids")  # skipped: no read, no error
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\]"):
        check_range(x, 0, 3, "ids")


@given(low=st.integers(-5, 5), span=st.integers(0, 5), data=st.data())
def test_check_range_is_skipped_while_validation_is_off(low, span, data):
    high = low + span
    outside = data.draw(st.one_of(st.integers(high + 1, high + 50), st.integers(low - 50, low - 1)))
    x = torch.tensor([low, outside])
    with pytest.raises(ValueError, match=rf"ids must lie in \[{low}, {high}\]"):
        check_range(x, low, high, "ids")
    s4.set_validate_args(False)
    check_range(x, low, high, "ids")  # no read, no error
    s4.set_validate_args(True)
    check_range(torch.tensor([low, high]), low, high, "ids")  # in range: fine


# ----------------------------------------------------------------------------- check_real


@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_check_real_returns_finite_numbers_as_float(value):
    out = check_real(value, "x")
    assert isinstance(out, float) and out == value


@given(value=st.integers(-(10**6), 10**6))
def test_check_real_accepts_ints_numpy_scalars_and_0d_tensors(value):
    assert check_real(value, "x") == float(value)
    assert check_real(np.float64(value), "x") == float(value)
    assert check_real(torch.tensor(float(value), dtype=torch.float64), "x") == float(value)


@given(value=st.one_of(bools, strings, not_numbers))
def test_check_real_refuses_non_numbers_naming_the_argument(value):
    with pytest.raises(TypeError, match="^temperature must be a real number"):
        check_real(value, "temperature")


@given(value=non_finite)
def test_check_real_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match="^epsilon must be finite"):
        check_real(value, "epsilon")


@given(value=st.floats(allow_nan=False, allow_infinity=False, max_value=0.0))
def test_check_positive_refuses_non_positive_values(value):
    with pytest.raises(ValueError, match=re.escape("tau must lie in (0, inf), got")):
        check_positive(value, "tau")


@given(
    value=st.one_of(
        st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False),
        st.floats(min_value=1 + 1e-12, allow_nan=False, allow_infinity=False),
    )
)
def test_check_probability_refuses_values_outside_the_unit_interval(value):
    with pytest.raises(ValueError, match=re.escape("ratio must lie in [0, 1], got")):
        check_probability(value, "ratio")


@given(value=st.floats(min_value=0.0, max_value=1.0))
def test_check_probability_accepts_the_unit_interval(value):
    assert check_probability(value, "ratio") == value


# ----------------------------------------------------------------------------- check_int etc.


@given(value=st.one_of(bools, st.floats(), strings, st.none()))
def test_check_int_refuses_bools_and_non_ints(value):
    with pytest.raises(TypeError, match="^num_iters must be an int"):
        check_int(value, "num_iters", 1)


@given(minimum=st.integers(-10, 10), data=st.data())
def test_check_int_bounds(minimum, data):
    below = data.draw(st.integers(minimum - 100, minimum - 1))
    with pytest.raises(ValueError, match=f"^count must be >= {minimum}"):
        check_int(below, "count", minimum)
    maximum = minimum + data.draw(st.integers(0, 10))
    above = data.draw(st.integers(maximum + 1, maximum + 100))
    with pytest.raises(ValueError, match=f"^count must be <= {maximum}"):
        check_int(above, "count", minimum, maximum)
    inside = data.draw(st.integers(minimum, maximum))
    assert check_int(inside, "count", minimum, maximum) == inside


INT_LIKES: list[Callable[[int], object]] = [
    int,
    np.int64,
    np.int32,
    np.uint16,
    lambda v: torch.tensor(v),
    lambda v: torch.tensor([v], dtype=torch.int32),
]


@pytest.mark.parametrize("wrap", INT_LIKES, ids=["int", "np.int64", "np.int32", "np.uint16", "0-d", "(1,) int32"])
@given(value=st.integers(0, 60_000), minimum=st.integers(0, 60_000))
def test_check_int_takes_int_likes_and_returns_a_python_int(wrap, value, minimum):
    """numpy integer scalars (``df["item"].max()``) and one-element integer tensors count as
    ints, as ``check_real`` takes their real counterparts; the bounds apply to their value."""
    if value < minimum:
        with pytest.raises(ValueError, match=f"^count must be >= {minimum}, got {value}$"):
            check_int(wrap(value), "count", minimum)
        return
    out = check_int(wrap(value), "count", minimum)
    assert type(out) is int and out == value


@given(
    value=st.one_of(
        st.sampled_from([np.True_, np.float64(3.0), np.float32(1.0)]),
        st.integers(-3, 3).map(lambda v: torch.tensor(float(v))),
        st.booleans().map(torch.tensor),
        st.lists(st.integers(0, 3), min_size=2, max_size=4).map(torch.tensor),
    )
)
def test_check_int_refuses_bool_and_float_scalars_and_longer_tensors(value):
    with pytest.raises(TypeError, match="^count must be an int, got "):
        check_int(value, "count", 0)


def test_modules_store_int_likes_as_python_ints():
    """A count passed as a numpy or tensor scalar is kept as a Python int, so configs, reprs
    and JSON stay plain."""
    encoder = s4.SASRecEncoder(np.int64(30), hidden_size=np.int32(8), num_heads=torch.tensor(2), max_len=np.int64(5))
    assert (encoder.num_items, encoder.hidden_size, encoder.max_len) == (30, 8, 5)
    assert all(type(v) is int for v in (encoder.num_items, encoder.hidden_size, encoder.max_len))
    assert encoder(torch.tensor([[0, 3, 4]])).shape == (1, 3, 8)
    kmeans = s4.KMeans(np.int64(3), num_iters=np.int64(2), seed=np.uint32(1), chunk_size=torch.tensor(4))
    assert all(type(v) is int for v in (kmeans.num_clusters, kmeans.num_iters, kmeans.seed, kmeans.chunk_size))
    clusters = s4.OnlineIntentClustering(np.int64(4), np.int64(3), num_iters=np.int16(2))
    assert all(type(v) is int for v in (clusters.hidden_size, clusters.num_prototypes, clusters.num_iters))
    assert type(s4.SinkhornKnopp(num_iters=np.int64(3)).num_iters) is int
    q = s4.sinkhorn_knopp(torch.zeros(4, 2), num_iters=np.int64(3))
    assert torch.allclose(q.sum(1), torch.ones(4))


@given(value=st.one_of(st.integers(), st.floats(), strings, st.none()))
def test_check_bool_refuses_everything_but_bools(value):
    with pytest.raises(TypeError, match="^normalize must be a bool"):
        check_bool(value, "normalize")


@given(value=st.one_of(strings.filter(lambda s: s not in ("mean", "sum")), st.integers(), st.none()))
def test_check_choice_refuses_unknown_values(value):
    with pytest.raises(ValueError, match=r"^reduction must be one of \('mean', 'sum'\)"):
        check_choice(value, ("mean", "sum"), "reduction")


# ----------------------------------------------------------------------------- the modules

# (constructor of a module or call of a function, name of a real hyper-parameter)
REAL_HYPERPARAMETERS: list[tuple[Callable[..., object], str]] = [
    (lambda **kw: s4.SinkhornKnopp(**kw), "epsilon"),
    (lambda **kw: s4.sinkhorn_knopp(torch.zeros(2, 2), **kw), "epsilon"),
    (lambda **kw: s4.OnlineIntentClustering(4, 2, **kw), "temperature"),
    (lambda **kw: s4.OnlineIntentClustering(4, 2, **kw), "epsilon"),
    (lambda **kw: s4.online_clustering(torch.ones(2, 4), torch.ones(2, 4), **kw), "temperature"),
    (lambda **kw: s4.online_clustering(torch.ones(2, 4), torch.ones(2, 4), **kw), "epsilon"),
    (lambda **kw: s4.PrototypeDistillation(**kw), "temperature"),
    (
        lambda **kw: s4.prototype_distillation(
            torch.ones(2, 4), torch.ones(2, 4), torch.tensor([0, 1]), **kw
        ),
        "temperature",
    ),
    (lambda **kw: s4.GradientReversal(**kw), "scale"),
    (lambda **kw: s4.grad_reverse(torch.ones(2), **kw), "scale"),
    (lambda **kw: s4.HeadTailAdversary(4, **kw), "scale"),
    (lambda **kw: s4.dann_schedule(0.5, **kw), "gamma"),
]
COUNT_HYPERPARAMETERS: list[tuple[Callable[..., object], str]] = [
    (lambda **kw: s4.SinkhornKnopp(**kw), "num_iters"),
    (lambda **kw: s4.OnlineIntentClustering(**{"hidden_size": 4, **kw}), "num_iters"),
    (lambda **kw: s4.OnlineIntentClustering(**{"hidden_size": 4, **kw}), "num_prototypes"),
    (lambda **kw: s4.OnlineIntentClustering(**{"hidden_size": 4, **kw}), "freeze_prototypes_steps"),
    (lambda **kw: s4.OnlineIntentClustering(**{"num_prototypes": 2, **kw}), "hidden_size"),
    (lambda **kw: s4.HeadTailAdversary(**{"hidden_size": 4, **kw}), "num_classes"),
    (lambda **kw: s4.HeadTailAdversary(**kw), "hidden_size"),
]


def _ids(cases: list[tuple[Callable[..., object], str]]) -> list[str]:
    return [f"{i}-{name}" for i, (_, name) in enumerate(cases)]


@pytest.mark.parametrize(("make", "name"), REAL_HYPERPARAMETERS, ids=_ids(REAL_HYPERPARAMETERS))
@settings(max_examples=examples(10))
@given(value=st.one_of(bools, strings, st.none(), non_finite))
def test_real_hyperparameters_refuse_bool_str_nan_inf(make, name, value):
    error = ValueError if isinstance(value, float) else TypeError
    with pytest.raises(error, match=f"^{name} must "):
        make(**{name: value})


@pytest.mark.parametrize(("make", "name"), COUNT_HYPERPARAMETERS, ids=_ids(COUNT_HYPERPARAMETERS))
@settings(max_examples=examples(10))
@given(value=st.one_of(bools, st.floats(allow_nan=False), strings))
def test_counts_refuse_bools_floats_and_strings(make, name, value):
    with pytest.raises(TypeError, match=f"^{name} must be an int"):
        make(**{name: value})


# ----------------------------------------------------------------------------- devices
#
# A tensor argument on another device than its partners is a structural error (it reads only
# ``tensor.device``, so it runs with value checks off too): the error names both arguments and
# both devices. The ``meta`` device stands in for a GPU on this CPU-only suite.


@given(devices=st.lists(st.sampled_from(["cpu", "meta", None]), min_size=1, max_size=5))
def test_check_same_device_names_the_first_pair_that_differs(devices):
    named = [(None if d is None else torch.zeros(1, device=d), f"t{i}") for i, d in enumerate(devices)]
    present = [(i, d) for i, d in enumerate(devices) if d is not None]
    odd = next(((i, d) for i, d in present[1:] if d != present[0][1]), None)
    if odd is None:
        check_same_device(*named)  # one device (or none given): silent
        return
    first, first_device = present[0]
    with pytest.raises(ValueError) as info:
        check_same_device(*named)
    assert str(info.value) == (
        f"t{first} and t{odd[0]} must be on the same device, got t{first} on {first_device} "
        f"and t{odd[0]} on {odd[1]}"
    )


def _device_cases() -> list[tuple[str, Callable[[str], object], str]]:
    """(label, call with one argument on the given device, that argument's name in the error)."""
    z, ids = torch.randn(4, 8), torch.zeros(4, dtype=torch.long)

    def on(x: torch.Tensor, device: str) -> torch.Tensor:
        return x.to("meta") if device == "meta" else x

    return [
        ("intent_info_nce z2", lambda d: s4.intent_info_nce(z, on(z, d)), "z2"),
        (
            "intent_info_nce prototypes",
            lambda d: s4.intent_info_nce(z, z, prototypes=on(torch.randn(3, 8), d), assignments=ids),
            "prototypes",
        ),
        (
            "intent_info_nce assignments",
            lambda d: s4.intent_info_nce(z, z, prototypes=torch.randn(3, 8), assignments=on(ids, d)),
            "assignments",
        ),
        ("intent_info_nce groups", lambda d: s4.intent_info_nce(z, z, groups=on(ids, d)), "groups"),
        ("online_clustering", lambda d: s4.online_clustering(z, on(torch.randn(3, 8), d)), "prototypes"),
        (
            "OnlineIntentClustering",
            lambda d: s4.OnlineIntentClustering(8, num_prototypes=3)(on(z, d)),
            "the prototypes",
        ),
        (
            "prototype_distillation prototypes",
            lambda d: s4.prototype_distillation(z, on(torch.randn(3, 8), d), ids),
            "prototypes",
        ),
        (
            "head_tail_adversarial_loss weight",
            lambda d: s4.head_tail_adversarial_loss(z, ids, on(torch.randn(2, 8), d)),
            "weight",
        ),
        (
            "head_tail_adversarial_loss bias",
            lambda d: s4.head_tail_adversarial_loss(z, ids, torch.randn(2, 8), on(torch.zeros(2), d)),
            "bias",
        ),
        (
            "head_tail_adversarial_loss labels",
            lambda d: s4.head_tail_adversarial_loss(z, on(ids, d), torch.randn(2, 8)),
            "labels",
        ),
        ("HeadTailAdversary", lambda d: s4.HeadTailAdversary(8)(on(z, d), on(ids, d)), "weight"),
        (
            "sampled_bce table",
            lambda d: s4.sampled_bce(z, on(torch.randn(10, 8), d), ids + 1, ids + 2),
            "table",
        ),
        (
            "sampled_bce negatives",
            lambda d: s4.sampled_bce(z, torch.randn(10, 8), ids + 1, on(ids + 2, d)),
            "negatives",
        ),
        (
            "sampled_bce weights",
            lambda d: s4.sampled_bce(z, torch.randn(10, 8), ids + 1, ids + 2, weights=on(torch.ones(4), d)),
            "weights",
        ),
        (
            "linear_cross_entropy targets",
            lambda d: s4.linear_cross_entropy(z, torch.randn(10, 8), on(ids + 1, d)),
            "targets",
        ),
        (
            "SASRecEncoder.represent hidden",
            lambda d: s4.SASRecEncoder(10, hidden_size=8, num_heads=1, max_len=5).represent(
                torch.ones(2, 5, dtype=torch.long), hidden=on(torch.randn(2, 5, 8), d), pooling="mean"
            ),
            "hidden",
        ),
        (
            "SASRecEncoder.embed_items",
            lambda d: s4.SASRecEncoder(10, hidden_size=8).embed_items(on(torch.ones(2, 3, dtype=torch.long), d)),
            "the item table",
        ),
        (
            "SASRecEncoder.score_items",
            lambda d: s4.SASRecEncoder(10, hidden_size=8).score_items(on(torch.randn(2, 8), d)),
            "the item table",
        ),
        (
            "SASRecEncoder",
            lambda d: s4.SASRecEncoder(10, hidden_size=8, num_heads=1, max_len=5)(
                on(torch.ones(2, 5, dtype=torch.long), d)
            ),
            "the encoder's parameters",
        ),
    ]


DEVICE_CASES = _device_cases()


def test_ids_that_only_index_may_stay_on_the_cpu():
    """The distillation's assignments only pick prototype rows (torch indexes a tensor of any
    device with CPU ids): CPU assignments are accepted beside student and prototypes on another
    device, and ids on a third device are not."""
    ids = torch.zeros(4, dtype=torch.long)
    meta = s4.prototype_distillation(torch.randn(4, 8, device="meta"), torch.randn(3, 8, device="meta"), ids)
    assert meta.device.type == "meta"
    with pytest.raises(ValueError, match="^student and assignments must be on the same device"):
        s4.prototype_distillation(torch.randn(4, 8), torch.randn(3, 8), ids.to("meta"))


@pytest.mark.parametrize("validate", [True, False], ids=["checks-on", "checks-off"])
@pytest.mark.parametrize(("label", "call", "name"), DEVICE_CASES, ids=[c[0] for c in DEVICE_CASES])
def test_a_tensor_on_another_device_is_named_in_the_error(label, call, name, validate):
    call("cpu")  # the same call with every tensor on one device runs
    with s4.set_validate_args(validate), pytest.raises(ValueError, match="on the same device") as info:
        call("meta")
    message = str(info.value)
    assert name in message and "cpu" in message and "meta" in message, message


class _GeneratorSaysCuda(torch.Generator):
    """A CPU generator that reports a CUDA device: the check reads only ``generator.device``."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)


AUGMENTERS: list[tuple[str, Callable[..., torch.Tensor]]] = [
    ("mask_items", lambda ids, g: s4.mask_items(ids, num_items=9, generator=g)),
    ("crop_items", lambda ids, g: s4.crop_items(ids, generator=g)),
    ("reorder_items", lambda ids, g: s4.reorder_items(ids, generator=g)),
    ("insert_items", lambda ids, g: s4.insert_items(ids, num_items=9, generator=g)),
    ("SequenceAugmenter", lambda ids, g: s4.SequenceAugmenter(9)(ids, generator=g)),
]


@pytest.mark.parametrize(("label", "augment"), AUGMENTERS, ids=[a[0] for a in AUGMENTERS])
def test_augmenters_refuse_a_generator_of_another_device_type(label, augment):
    ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    augment(ids, torch.Generator().manual_seed(0))  # a CPU generator for CPU ids draws
    with pytest.raises(ValueError, match=r"^generator must be on the device type of item_ids, got a cuda generator"):
        augment(ids, _GeneratorSaysCuda())
    assert augment(ids.to("meta"), torch.Generator()).device.type == "meta"  # shapes only: any generator


# ----------------------------------------------------------------------------- test setup


def test_hypothesis_profiles_are_registered():
    assert settings.get_profile("default").max_examples >= 10
    assert settings.get_profile("ci").max_examples >= 200
    assert settings.get_profile("ci").deadline is None


def test_slow_marker_is_registered(pytestconfig):
    assert any(line.startswith("slow:") for line in pytestconfig.getini("markers"))
