"""The example's model (examples/s4rec/s4rec_example/model.py): losses against slow references,
and gradients that reach exactly the parameters each preset should train."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import s4rec_components
from s4rec_components import generate_synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "s4rec"))

from s4rec_example.config import PRESETS, TrainConfig  # noqa: E402
from s4rec_example.data import prepare  # noqa: E402
from s4rec_example.intents import fit_intents  # noqa: E402
from s4rec_example.model import Intents, build_model  # noqa: E402

NUM_ITEMS = 30
SMALL = dict(hidden_size=16, num_heads=2, max_len=8, num_prototypes=8, num_intents=4, batch_size=16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    dataset = generate_synthetic(num_users=48, num_items=NUM_ITEMS, seed=3)
    config = TrainConfig.from_preset("sasrec", **SMALL)
    return prepare(dataset, config, torch.device("cpu"))


def _batch(data, b=16):
    idx = torch.arange(b)
    inputs = data.split.train_inputs[idx]
    g = torch.Generator().manual_seed(1)
    return idx, inputs, data.split.train_targets[idx], data.sampler(idx, inputs.shape[1], g), data.heads[idx]


def _model(preset, data, **overrides):
    torch.manual_seed(0)
    config = TrainConfig.from_preset(preset, **{**SMALL, **overrides})
    model = build_model(config, data.num_items)
    intents = None
    if model.uses_intents:
        intents = fit_intents(model, data.split.train_inputs, num_intents=4, num_iters=5, seed=0, batch_size=64)
    return config, model, intents


def _nonzero(grad):
    return grad is not None and bool(grad.abs().sum() > 0)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_gradients_reach_exactly_the_parameters_of_the_preset(preset, tiny):
    config, model, intents = _model(preset, tiny)
    _, inputs, targets, negatives, heads = _batch(tiny)
    terms = model(inputs, targets, negatives, heads, intents, torch.Generator().manual_seed(2))
    expected_terms = {"sr", "loss"}
    for name, key in (("beta1", "scl"), ("intent_weight", "intent"), ("alpha", "clust"), ("beta2", "ckd"),
                      ("lam", "adv")):
        if getattr(config, name) > 0:
            expected_terms.add(key)
    assert set(terms) == expected_terms
    terms["loss"].backward()
    table = model.encoder.item_embeddings.weight.grad
    assert _nonzero(table) and _nonzero(model.encoder.position_embeddings.weight.grad)
    assert not _nonzero(table[0]), "the padding row must not train"
    assert not _nonzero(table[NUM_ITEMS + 1]), "the mask row is never used when masks are written as padding"
    # the prototypes exist and train exactly when a prototype term is on; the adversary when lam > 0
    assert (model.clustering is not None) == config.uses_prototypes
    if model.clustering is not None:
        assert _nonzero(model.clustering.prototypes.grad)
    assert (model.adversary is not None) == (config.lam > 0)
    if model.adversary is not None:
        assert all(_nonzero(p.grad) for p in model.adversary.parameters())
    assert (model.augmenter is not None) == config.uses_views


def test_adversary_trains_the_classifier_and_reverses_the_encoder(tiny):
    config, model, _ = _model("sasrec", tiny, lam=1.0, grl_scale=0.3)
    model.eval()  # no dropout: the two computations below see the same network
    _, inputs, targets, negatives, heads = _batch(tiny)
    encoder_params = [p for p in model.encoder.parameters()]
    classifier = list(model.adversary.parameters())
    adv = model(inputs, targets, negatives, heads)["adv"]
    reversed_grads = torch.autograd.grad(adv, encoder_params + classifier, allow_unused=True)
    # the same head/tail cross-entropy written by hand, without gradient reversal
    z = F.normalize(model.encoder.represent(inputs, pooling="mean"), dim=-1)
    weight, bias = model.adversary.classifier.weight, model.adversary.classifier.bias
    plain = F.cross_entropy(z @ weight.T + bias, heads)
    assert torch.allclose(adv, plain, atol=1e-6)
    plain_grads = torch.autograd.grad(plain, encoder_params + classifier, allow_unused=True)
    n = len(encoder_params)
    moved = 0
    for got, want in zip(reversed_grads[:n], plain_grads[:n]):
        if want is None:
            assert got is None or not _nonzero(got)
            continue
        torch.testing.assert_close(got, -0.3 * want, atol=1e-7, rtol=1e-5)
        moved += _nonzero(want)
    assert moved > 0
    for got, want in zip(reversed_grads[n:], plain_grads[n:]):
        torch.testing.assert_close(got, want)


def _nt_xent_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Slow NT-Xent: each of the 2b rows against every other row, positive = its partner; mean."""
    rows = torch.cat([a, b]).double()
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        scores = [float(rows[i] @ rows[j]) for j in range(2 * n) if j != i]
        positive = float(rows[i] @ rows[partner])
        top = max(scores)
        total += -(positive - top - math.log(sum(math.exp(s - top) for s in scores)))
    return torch.tensor(total / (2 * n), dtype=torch.float64)


class _FixedKMeans:
    def __init__(self, assignments):
        self.assignments = assignments

    def assign(self, x):
        return self.assignments[: x.shape[0]]


def test_instance_and_intent_terms_equal_iclrec_formulas(tiny):
    """cl4srec's instance NCE on the flattened views, ICLRec's intent NCE on the views' mean_all."""
    config, model, _ = _model("iclrec", tiny, intent_views="shared")
    model.eval()
    _, inputs, targets, negatives, heads = _batch(tiny, b=6)
    centroids = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(4)), dim=-1)
    assignments = torch.tensor([0, 1, 1, 3, 2, 0])
    intents = Intents(kmeans=_FixedKMeans(assignments), centroids=centroids)
    terms = model(inputs, targets, negatives, heads, intents, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    v1, v2 = model.augmenter(inputs, generator=g), model.augmenter(inputs, generator=g)
    with torch.no_grad():
        h1, h2 = model.encoder(v1), model.encoder(v2)
    flat = _nt_xent_reference(h1.flatten(1), h2.flatten(1))
    torch.testing.assert_close(terms["scl"].double(), flat, rtol=1e-4, atol=1e-4)
    positives = centroids[assignments]
    intent = (_nt_xent_reference(h1.mean(1), positives) + _nt_xent_reference(h2.mean(1), positives)) / 2
    torch.testing.assert_close(terms["intent"].double(), intent, rtol=1e-5, atol=1e-5)


def test_two_way_reduction_doubles_the_ntxent_mean(tiny):
    _, mean_model, _ = _model("cl4srec", tiny, view_pooling="mean")
    _, two_way, _ = _model("cl4srec", tiny, view_pooling="mean", cl_reduction="two-way")
    _, inputs, targets, negatives, heads = _batch(tiny)
    a = mean_model.eval()(inputs, targets, negatives, heads, None, torch.Generator().manual_seed(3))["scl"]
    b = two_way.eval()(inputs, targets, negatives, heads, None, torch.Generator().manual_seed(3))["scl"]
    torch.testing.assert_close(b, 2 * a)


@pytest.mark.parametrize("source", ["targets", "probs"])
def test_assign_from_reaches_the_clustering_head(source, tiny):
    """``--assign-from`` sets where h(u) comes from; the library's tests hold what each means."""
    _, model, _ = _model("s4rec", tiny, assign_from=source)
    assert model.clustering is not None and model.clustering.assign_from == source
    _, inputs, *_ = _batch(tiny)
    with torch.no_grad():
        z = model.encoder.represent(inputs, pooling="mean")
        out = model.clustering.eval()(z)
    source_tensor = out.targets if source == "targets" else out.probs
    torch.testing.assert_close(out.assignments, source_tensor.argmax(-1))


@pytest.mark.parametrize("detach", [True, False])
def test_detach_teacher_decides_whether_the_distillation_trains_the_prototypes(detach, tiny):
    """With the distillation the only prototype term, the prototypes train exactly when the
    teacher is not detached (``--no-detach-teacher``)."""
    _, model, _ = _model("s4rec", tiny, alpha=0.0, beta1=0.0, lam=0.0, detach_teacher=detach)
    assert model.distillation is not None and model.distillation.detach_teacher is detach
    _, inputs, targets, negatives, heads = _batch(tiny)
    terms = model(inputs, targets, negatives, heads, None, torch.Generator().manual_seed(2))
    terms["loss"].backward()
    assert model.clustering is not None
    assert _nonzero(model.clustering.prototypes.grad) is not detach


def test_intent_negative_scale_multiplies_the_prototypes_of_the_contrastive_term_only(tiny):
    """``--cl-intent-negative-scale c``: Eq. 14 sees c times the prototypes; every other term, and the
    prototypes the clustering and distillation use, are unchanged."""
    seen = []
    results = []
    for scale in (1.0, 3.0):
        _, model, _ = _model("s4rec", tiny, cl_intent_negative_scale=scale)
        assert model.contrastive is not None
        model.contrastive.register_forward_pre_hook(lambda _m, args: seen.append(args[2].detach()))
        _, inputs, targets, negatives, heads = _batch(tiny)
        results.append(model(inputs, targets, negatives, heads, None, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(seen[1], 3 * seen[0])
    for key in ("sr", "clust", "ckd", "adv"):
        torch.testing.assert_close(results[1][key], results[0][key])
    assert not torch.allclose(results[1]["scl"], results[0]["scl"])


@pytest.mark.parametrize("preset", ["s4rec", "iclrec"])
def test_the_printed_denominator_reaches_the_contrastive_terms(preset, tiny):
    """``--no-cl-positive-in-denominator``: the shared NT-Xent module drops the positive from its
    denominators (the library's tests hold what that means), so its terms can go below 0."""
    _, usual, intents = _model(preset, tiny)
    _, printed, _ = _model(preset, tiny, cl_positive_in_denominator=False)
    assert usual.contrastive is not None and usual.contrastive.positive_in_denominator
    assert printed.contrastive is not None and not printed.contrastive.positive_in_denominator
    _, inputs, targets, negatives, heads = _batch(tiny)
    a = usual.eval()(inputs, targets, negatives, heads, intents, torch.Generator().manual_seed(3))
    b = printed.eval()(inputs, targets, negatives, heads, intents, torch.Generator().manual_seed(3))
    torch.testing.assert_close(b["sr"], a["sr"])
    assert bool(b["scl"] < a["scl"]), "leaving a positive term out of every denominator lowers each loss"


def test_bce_loss_equals_per_position_reference(tiny):
    _, model, _ = _model("sasrec", tiny)
    model.eval()
    _, inputs, targets, negatives, heads = _batch(tiny)
    with torch.no_grad():
        hidden = model.encoder(inputs)
        loss = model.sr_loss(hidden, targets, negatives)
    table = model.encoder.item_embeddings.weight.detach()
    total, count = 0.0, 0
    for u in range(inputs.shape[0]):
        for j in range(inputs.shape[1]):
            if targets[u, j] == 0:
                continue
            pos = float(hidden[u, j] @ table[targets[u, j]])
            neg = float(hidden[u, j] @ table[negatives[u, j]])
            total += -math.log(1 / (1 + math.exp(-pos))) - math.log(1 - 1 / (1 + math.exp(-neg)))
            count += 1
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("rows", ["real", "all"])
def test_ce_loss_equals_softmax_over_real_items(rows, tiny):
    _, model, _ = _model("sasrec", tiny, loss="ce")
    model.ce_rows = rows
    model.eval()
    _, inputs, targets, _, _ = _batch(tiny)
    with torch.no_grad():
        hidden = model.encoder(inputs)
        table = model.encoder.item_embeddings.weight
        losses = []
        for u in range(inputs.shape[0]):
            for j in range(inputs.shape[1]):
                if targets[u, j] > 0:
                    logits = hidden[u, j] @ table[1 : NUM_ITEMS + 1].T  # items 1..n only
                    losses.append(-torch.log_softmax(logits.double(), 0)[targets[u, j] - 1])
        got = model.sr_loss(hidden, targets, None).item()
    assert got == pytest.approx(float(torch.stack(losses).mean()), rel=1e-5)


def test_negatives_avoid_the_users_items_and_padding(tiny):
    g = torch.Generator().manual_seed(0)
    users = torch.arange(tiny.num_users).repeat(20)
    negatives = tiny.sampler(users, 8, g)
    assert int(negatives.min()) >= 1 and int(negatives.max()) <= NUM_ITEMS
    rows = tiny.dataset.sequences if hasattr(tiny.dataset, "sequences") else None
    for u, row in zip(users.tolist(), negatives.tolist()):
        own = set(tiny.dataset.sequence(u).tolist()) if rows is None else set(rows[u])
        assert not own & set(row)


def test_prototype_terms_refuse_flattened_views():
    with pytest.raises(ValueError, match="view_pooling"):
        build_model(TrainConfig.from_preset("s4rec", view_pooling="flatten", **SMALL), NUM_ITEMS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("preset", ["sasrec", "cl4srec", "iclrec", "s4rec"])
def test_bce_training_steps_never_synchronise_on_cuda(preset):
    """With value checks off, a training step (sampling, augmenting, all losses, backward, Adam) syncs nothing."""
    import s4rec_components

    device = torch.device("cuda")
    dataset = generate_synthetic(num_users=64, num_items=NUM_ITEMS, seed=3)
    config = TrainConfig.from_preset(preset, **SMALL)
    data = prepare(dataset, config, device)
    torch.manual_seed(0)
    model = build_model(config, data.num_items).to(device)
    from s4rec_example.loop import make_optimizer

    optimizer = make_optimizer(model, config, device)
    intents = None
    if model.uses_intents:
        intents = fit_intents(model, data.split.train_inputs, num_intents=4, num_iters=5, seed=0, batch_size=64)
    generator = torch.Generator(device=device).manual_seed(0)
    idx = torch.arange(16, device=device)

    def step():
        inputs = data.split.train_inputs[idx]
        terms = model(inputs, data.split.train_targets[idx], data.sampler(idx, inputs.shape[1], generator),
                      data.heads[idx], intents, generator)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    model.train()
    step()  # first step: value checks on, may read the device
    previous = s4rec_components.validate_args_enabled()
    s4rec_components.set_validate_args(False)
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        s4rec_components.set_validate_args(previous)


_HOST_READS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "_unique2", "unique_dim",
               "unique_consecutive", "equal"}


@pytest.mark.parametrize("preset", ["sasrec", "cl4srec", "iclrec", "s4rec"])
def test_a_bce_training_step_reads_nothing_from_the_device(preset):
    """Counted on the CPU at the dispatcher: with value checks off, the dense encoder path (what
    ``compute_path="auto"`` takes on a GPU) and fused Adam (what the loop takes on a GPU), a
    training step issues no op that copies a value to the host."""
    import s4rec_components
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountHostReads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.reads: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            if name in _HOST_READS or (name == "repeat_interleave" and "output_size" not in (kwargs or {})):
                self.reads[name] = self.reads.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    dataset = generate_synthetic(num_users=64, num_items=NUM_ITEMS, seed=3)
    config = TrainConfig.from_preset(preset, compute_path="dense", **SMALL)
    data = prepare(dataset, config, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(config, data.num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    intents = None
    if model.uses_intents:
        intents = fit_intents(model, data.split.train_inputs, num_intents=4, num_iters=3, seed=0, batch_size=64)
    generator = torch.Generator().manual_seed(0)
    idx = torch.arange(16)

    def step():
        inputs = data.split.train_inputs[idx]
        terms = model(inputs, data.split.train_targets[idx], data.sampler(idx, inputs.shape[1], generator),
                      data.heads[idx], intents, generator)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    model.train()
    step()
    previous = s4rec_components.validate_args_enabled()
    s4rec_components.set_validate_args(False)
    try:
        with CountHostReads() as counter:
            step()
    finally:
        s4rec_components.set_validate_args(previous)
    assert counter.reads == {}
    with CountHostReads() as counter:  # the counter does see a read where there is one
        torch.ones(3).sum().item()
    assert counter.reads == {"_local_scalar_dense": 1}


@pytest.mark.parametrize("preset", ["sasrec", "s4rec"])
def test_a_ce_training_step_scoring_all_rows_reads_nothing_from_the_device(preset):
    """``ce_rows="all"`` (what ``"auto"`` takes on a GPU) weighs the b*l rows instead of picking the
    real ones by a boolean index: no host read; ``"real"`` reads (the counter can fail)."""
    import s4rec_components

    dataset = generate_synthetic(num_users=64, num_items=NUM_ITEMS, seed=3)
    config = TrainConfig.from_preset(preset, compute_path="dense", loss="ce", **SMALL)
    data = prepare(dataset, config, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(config, data.num_items).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    idx = torch.arange(16)

    def step():
        inputs = data.split.train_inputs[idx]
        terms = model(inputs, data.split.train_targets[idx], None, data.heads[idx], None, generator)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    step()
    previous = s4rec_components.validate_args_enabled()
    s4rec_components.set_validate_args(False)
    try:
        reads = {}
        for rows in ("all", "real"):
            model.ce_rows = rows
            with _count_host_reads() as counter:
                step()
            reads[rows] = counter.reads
    finally:
        s4rec_components.set_validate_args(previous)
    assert reads["all"] == {} and reads["real"]


def _count_host_reads():
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountHostReads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.reads: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            boolean_index = name in ("index", "index_put", "index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ()
            )
            if name in _HOST_READS or boolean_index or (
                name == "repeat_interleave" and "output_size" not in (kwargs or {})
            ):
                self.reads[name] = self.reads.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    return CountHostReads()


def _plain_sr_loss(model, hidden, targets, negatives):
    """The SR loss as plain torch ops (what the model computed before the library's fused losses)."""
    real = targets > 0
    encoder = model.encoder
    if model.loss == "ce":
        items = encoder.embed_items(torch.arange(1, NUM_ITEMS + 1))
        return F.cross_entropy(hidden[real] @ items.T, targets[real] - 1)
    pos = (hidden * encoder.embed_items(targets)).sum(-1)
    neg = (hidden * encoder.embed_items(negatives)).sum(-1)
    per_position = -(F.logsigmoid(pos) + F.logsigmoid(-neg))
    return per_position[real].mean()


@pytest.mark.parametrize(("loss", "rows"), [("bce", "auto"), ("ce", "real"), ("ce", "all")])
def test_sr_loss_and_its_gradients_equal_the_plain_torch_loss(loss, rows, tiny):
    """The library's fused ``linear_cross_entropy`` / ``sampled_bce`` give the plain loss and gradients."""
    _, model, _ = _model("s4rec", tiny, loss=loss)
    model.ce_rows = rows
    model.train()
    _, inputs, targets, negatives, _ = _batch(tiny)
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    results = []
    for compute in (model.sr_loss, lambda h, t, n: _plain_sr_loss(model, h, t, n)):
        torch.manual_seed(5)  # the same dropout masks
        value = compute(model.encoder(inputs), targets, negatives)
        results.append((value.detach(), torch.autograd.grad(value, params, allow_unused=True)))
    (got, got_grads), (expected, expected_grads) = results
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(got_grads, expected_grads):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_warm_started_intents_continue_from_the_previous_epochs_centroids(tiny):
    """ICLRec keeps one faiss.Clustering for the run: from the second epoch on, k-means starts
    from the last epoch's centroids. ``fit_intents(init=...)`` does that; without it every
    epoch starts from random points."""
    from s4rec_components import k_means
    from s4rec_example.intents import encode_sequences

    _, model, _ = _model("iclrec", tiny)
    inputs = tiny.split.train_inputs
    kw = dict(num_intents=4, num_iters=1, seed=0, batch_size=64)
    first = fit_intents(model, inputs, **kw)
    start = first.kmeans.centroids.clone()
    with torch.no_grad():  # the encoder moves between epochs
        model.encoder.item_embeddings.weight.mul_(1.5)
    x = encode_sequences(model, inputs, model.intent_pooling, 64)
    warm = fit_intents(model, inputs, init=first.kmeans.centroids, **kw)
    expected = k_means(x, 4, num_iters=1, init=start, generator=torch.Generator().manual_seed(0),
                       max_points_per_centroid=4096)
    torch.testing.assert_close(warm.kmeans.centroids, expected.centroids)
    torch.testing.assert_close(warm.centroids, torch.nn.functional.normalize(expected.centroids, dim=-1))
    cold = fit_intents(model, inputs, **kw)  # no init: random points again
    random_start = k_means(x, 4, num_iters=1, generator=torch.Generator().manual_seed(0), max_points_per_centroid=4096)
    torch.testing.assert_close(cold.kmeans.centroids, random_start.centroids)
    # with no Lloyd step the fit returns its start: the last epoch's centroids, or data points
    kw0 = {**kw, "num_iters": 0}
    torch.testing.assert_close(fit_intents(model, inputs, init=first.kmeans.centroids, **kw0).kmeans.centroids, start)
    rows = fit_intents(model, inputs, **kw0).kmeans.centroids
    assert all(bool((x == row).all(1).any()) for row in rows) and not torch.allclose(rows, start)


@pytest.mark.parametrize("preset", sorted(p for p in PRESETS if TrainConfig.from_preset(p).uses_views))
def test_views_drawn_beforehand_give_the_same_step(preset, tiny):
    """``forward(views=make_views(x, g))`` is ``forward(generator=g)`` for the same generator
    state: drawing the views outside (as a compiled step does) changes no number."""
    _, model, intents = _model(preset, tiny)
    model.eval()  # no dropout: the two calls see the same network
    _, inputs, targets, negatives, heads = _batch(tiny)
    inside = model(inputs, targets, negatives, heads, intents=intents, generator=torch.Generator().manual_seed(5))
    views = model.make_views(inputs, torch.Generator().manual_seed(5))
    outside = model(inputs, targets, negatives, heads, intents=intents, views=views)
    assert inside.keys() == outside.keys()
    for key in inside:
        torch.testing.assert_close(outside[key], inside[key], rtol=0, atol=0)


def test_views_of_the_wrong_shape_are_refused(tiny):
    _, model, _ = _model("cl4srec", tiny)
    _, inputs, targets, negatives, heads = _batch(tiny)
    with pytest.raises(ValueError, match="views must be two tensors of the inputs' shape"):
        model(inputs, targets, negatives, heads, views=(inputs, inputs[:, 1:]))
    sasrec = _model("sasrec", tiny)[1]
    with pytest.raises(ValueError, match="has no augmenter"):
        sasrec.make_views(inputs)
    with pytest.raises(ValueError, match="use no views"):  # never silently dropped
        sasrec(inputs, targets, negatives, heads, views=(inputs, inputs))


@pytest.mark.parametrize("preset", ["sasrec", "cl4srec", "s4rec"])
def test_the_whole_step_traces_as_one_graph_when_the_views_are_given(preset):
    """Issue 8's compiled step: with the views drawn outside, dynamo traces the model's forward
    (augmented batch, encoder, every loss term) without a graph break. A break splits the step
    into separately launched pieces and is what kept the compiled s4rec step slow. Value checks
    off, as in the example's loop (they read the device by design)."""
    torch._dynamo.reset()
    previous = s4rec_components.validate_args_enabled()
    s4rec_components.set_validate_args(False)
    try:
        dataset = generate_synthetic(num_users=64, num_items=NUM_ITEMS, seed=4)
        # the default compute_path="auto": on the CPU it takes the packed path eagerly (these
        # short sequences are mostly padding), and the dense one while being compiled
        config = TrainConfig.from_preset(preset, **{**SMALL, "batch_size": 32})
        data = prepare(dataset, config, torch.device("cpu"))
        model = build_model(config, data.num_items).train()
        _, inputs, targets, negatives, heads = _batch(data, b=32)  # b >= the 8 prototypes: no warning
        views = model.make_views(inputs, torch.Generator().manual_seed(0)) if model.uses_views else None
        explained = torch._dynamo.explain(model)(inputs, targets, negatives=negatives, head_labels=heads, views=views)
        assert explained.graph_break_count == 0, [r.reason[:200] for r in explained.break_reasons]
        assert explained.graph_count == 1
    finally:
        s4rec_components.set_validate_args(previous)
        torch._dynamo.reset()
