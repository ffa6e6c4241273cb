"""k-means: Lloyd's laws against brute force, faiss' empty-cluster split, restarts, the module,
two gloo processes, bad inputs."""

from __future__ import annotations

import os
import tempfile

import hypothesis.strategies as st
import pytest
import torch
import torch.distributed as dist
from hypothesis import assume, given, settings
from strategies import examples, float_tensors, long_tensors, permutations

from _gloo import gloo_group, spawn
import s4rec_components.kmeans as kmeans_module
from s4rec_components import KMeans, KMeansResult, k_means, set_validate_args

# --------------------------------------------------------------------------------------------
# Strategies and slow references
# --------------------------------------------------------------------------------------------


@st.composite
def point_clouds(draw, max_points=24, max_dim=4, max_clusters=5, integer=False):
    """``(x, k)``: ``n >= k`` float64 points, integer-valued when ``integer`` (exact sums)."""
    k = draw(st.integers(1, max_clusters))
    n = draw(st.integers(k, max_points))
    d = draw(st.integers(1, max_dim))
    if integer:
        return draw(long_tensors((n, d), -6, 6)).double(), k
    return draw(float_tensors((n, d), low=-5.0, high=5.0)), k


def brute_distances(x, centroids):
    """(n, k) squared distances, one pair at a time."""
    out = torch.empty(x.shape[0], centroids.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        for j in range(centroids.shape[0]):
            out[i, j] = ((x[i].double() - centroids[j].double()) ** 2).sum()
    return out


def group_means(x, assignments, k):
    """Mean of the members of each cluster (None for an empty one)."""
    return [x[assignments == j].mean(0) if (assignments == j).any() else None for j in range(k)]


def assert_nearest(x, centroids, assignments, atol=1e-9):
    dist2 = brute_distances(x, centroids)
    chosen = dist2.gather(1, assignments.view(-1, 1)).squeeze(1)
    assert (chosen <= dist2.min(1).values + atol).all()


def seeded(seed):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Laws
# --------------------------------------------------------------------------------------------


@settings(max_examples=examples(40))
@given(cloud=point_clouds(), seed=st.integers(0, 2**31 - 1), iters=st.integers(0, 6))
def test_assignments_are_nearest_and_inertia_is_their_cost(cloud, seed, iters):
    x, k = cloud
    result = k_means(x, k, num_iters=iters, generator=seeded(seed))
    assert isinstance(result, KMeansResult)
    assert result.centroids.shape == (k, x.shape[1]) and result.assignments.shape == (x.shape[0],)
    assert result.assignments.dtype == torch.long
    assert torch.isfinite(result.centroids).all()
    assert_nearest(x, result.centroids, result.assignments)
    cost = brute_distances(x, result.centroids).gather(1, result.assignments.view(-1, 1)).sum()
    torch.testing.assert_close(result.inertia, cost, rtol=1e-9, atol=1e-9)


@settings(max_examples=examples(40))
@given(cloud=point_clouds(), seed=st.integers(0, 2**31 - 1))
def test_inertia_never_increases_across_iterations(cloud, seed):
    """Lloyd's two steps never increase the cost while no cluster is empty (no split)."""
    x, k = cloud
    runs = [k_means(x, k, num_iters=t, generator=seeded(seed)) for t in range(6)]
    for before, after in zip(runs, runs[1:]):
        if torch.bincount(before.assignments, minlength=k).min() == 0:
            break  # the next update splits a cluster: faiss' heuristic, not a Lloyd step
        assert after.inertia <= before.inertia * (1 + 1e-12) + 1e-12


@settings(max_examples=examples(40))
@given(cloud=point_clouds(integer=True), data=st.data())
def test_one_iteration_moves_centroids_to_the_means_of_their_members(cloud, data):
    x, k = cloud
    start = data.draw(permutations(x.shape[0]))[:k]
    init = x[start]
    nearest = brute_distances(x, init).argmin(1)
    means = group_means(x, nearest, k)
    assume(all(m is not None for m in means))  # an empty cluster is split instead
    result = k_means(x, k, num_iters=1, init=init)
    torch.testing.assert_close(result.centroids, torch.stack(means), rtol=1e-12, atol=1e-12)


@settings(max_examples=examples(30))
@given(cloud=point_clouds(integer=True), data=st.data())
def test_permuting_the_points_changes_nothing_given_the_same_init(cloud, data):
    x, k = cloud
    init = x[data.draw(permutations(x.shape[0]))[:k]]
    perm = data.draw(permutations(x.shape[0]))
    iters = data.draw(st.integers(1, 5))
    a = k_means(x, k, num_iters=iters, init=init, generator=seeded(1))
    b = k_means(x[perm], k, num_iters=iters, init=init, generator=seeded(1))
    # integer-valued points: sums are exact, so the centroids agree to the last bit
    assert torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.assignments[perm], b.assignments)
    torch.testing.assert_close(a.inertia, b.inertia)


@settings(max_examples=examples(20))
@given(cloud=point_clouds(integer=True), seed=st.integers(0, 2**31 - 1), chunk=st.integers(1, 7))
def test_chunk_size_changes_nothing(cloud, seed, chunk):
    x, k = cloud
    a = k_means(x, k, num_iters=4, generator=seeded(seed))
    b = k_means(x, k, num_iters=4, generator=seeded(seed), chunk_size=chunk)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignments, b.assignments)


def test_same_generator_state_gives_the_same_result_and_zero_iterations_give_data_points():
    x = torch.randn(40, 3, generator=seeded(0), dtype=torch.float64)
    a = k_means(x, 5, generator=seeded(7))
    b = k_means(x, 5, generator=seeded(7))
    assert torch.equal(a.centroids, b.centroids)
    start = k_means(x, 5, num_iters=0, generator=seeded(7)).centroids
    # faiss' initialisation: k distinct data points
    rows = [int(torch.nonzero((x == c).all(1))[0, 0]) for c in start]
    assert len(set(rows)) == 5


@pytest.mark.parametrize("seed", range(5))
def test_recovers_well_separated_clusters(seed):
    g = seeded(seed)
    k, per, d = 4, 30, 5
    centres = torch.eye(k, d, dtype=torch.float64) * 50
    labels = torch.arange(k).repeat_interleave(per)
    x = centres[labels] + torch.randn(k * per, d, generator=g, dtype=torch.float64)
    result = k_means(x, k, num_redo=5, generator=g)
    # one cluster per blob: the assignment is a relabelling of the truth
    pairs = set(zip(labels.tolist(), result.assignments.tolist()))
    assert len(pairs) == k and len({c for _, c in pairs}) == k
    for blob, cluster in pairs:
        torch.testing.assert_close(result.centroids[cluster], x[labels == blob].mean(0))


def test_restarts_keep_the_lowest_inertia():
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    singles = [k_means(x, 2, generator=seeded(s)).inertia for s in range(20)]
    assert max(singles) > min(singles)  # some starts end in the local optimum
    for s in range(5):
        best = k_means(x, 2, num_redo=6, generator=seeded(s))
        assert float(best.inertia) == pytest.approx(1.0)


@settings(max_examples=examples(20))
@given(cloud=point_clouds(), seed=st.integers(0, 2**31 - 1), redo=st.integers(1, 4), iters=st.integers(0, 3))
def test_restarts_from_init_continue_from_one_another_as_faiss(cloud, seed, redo, iters):
    """With ``init``, restart r starts where restart r - 1 ended (faiss with input centroids):
    the same as chaining single restarts by hand, keeping the first lowest inertia."""
    x, k = cloud
    init = x[:k].clone()
    got = k_means(x, k, num_iters=iters, num_redo=redo, init=init, generator=seeded(seed))
    g, start, runs = seeded(seed), init, []
    for _ in range(redo):  # each call draws its restart's sample and split seed from g, in order
        runs.append(k_means(x, k, num_iters=iters, init=start, generator=g))
        start = runs[-1].centroids
    best = runs[0]
    for run in runs[1:]:
        best = run if float(run.inertia) < float(best.inertia) else best
    assert torch.equal(got.centroids, best.centroids) and torch.equal(got.assignments, best.assignments)
    assert float(got.inertia) <= float(runs[0].inertia)  # more restarts never end worse


def test_restarts_from_init_are_more_iterations_not_the_same_run_again():
    """Points 0..19 on a line from centroids 0 and 1: one Lloyd step at a time moves the pair
    apart, so three chained one-step restarts end where three steps of one run end."""
    x = torch.arange(20, dtype=torch.float64).unsqueeze(1)
    init = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    chained = k_means(x, 2, num_iters=1, num_redo=3, init=init, generator=seeded(0))
    three_steps = k_means(x, 2, num_iters=3, init=init, generator=seeded(0))
    one_step = k_means(x, 2, num_iters=1, init=init, generator=seeded(0))
    assert torch.equal(chained.centroids, three_steps.centroids)
    assert float(chained.inertia) < float(one_step.inertia)


def test_empty_cluster_is_refilled_by_splitting_as_faiss_does():
    """Centroid 1 starts far from every point: it is empty after the first assignment, so the
    only other cluster is copied into it and the pair is pushed apart by 1/1024."""
    x = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 5.0, 2.0]], dtype=torch.float64)
    init = torch.tensor([[0.0, 0.0, 0.0], [100.0, 100.0, 100.0]], dtype=torch.float64)
    result = k_means(x, 2, num_iters=1, init=init)
    mean = x.mean(0)
    eps = kmeans_module.SPLIT_PERTURBATION
    sign = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(result.centroids[1], mean * (1 + eps * sign))
    torch.testing.assert_close(result.centroids[0], mean * (1 - eps * sign))


def test_duplicate_points_and_as_many_clusters_as_points():
    x = torch.tensor([[1.0, 1.0]] * 4 + [[5.0, 5.0]] * 2)
    result = k_means(x, 3, generator=seeded(0))
    assert torch.isfinite(result.centroids).all() and torch.isfinite(result.inertia)
    assert_nearest(x, result.centroids, result.assignments, atol=1e-4)
    y = torch.randn(6, 2, generator=seeded(1), dtype=torch.float64)
    exact = k_means(y, 6, generator=seeded(2))
    assert float(exact.inertia) == pytest.approx(0.0, abs=1e-12)  # every point its own centre


def test_subsampling_trains_on_a_sample_and_assigns_every_point():
    x = torch.randn(500, 3, generator=seeded(0), dtype=torch.float64)
    full = k_means(x, 4, generator=seeded(1))
    sampled = k_means(x, 4, generator=seeded(1), max_points_per_centroid=10)
    assert sampled.assignments.shape == (500,)
    assert_nearest(x, sampled.centroids, sampled.assignments)
    assert not torch.allclose(full.centroids, sampled.centroids)
    # a cap above n is no cap
    same = k_means(x, 4, generator=seeded(1), max_points_per_centroid=1000)
    assert torch.equal(same.centroids, full.centroids)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(dtype):
    x = torch.randn(60, 4, generator=seeded(0)).to(dtype)
    result = k_means(x, 3, generator=seeded(0))
    expected = torch.float64 if dtype == torch.float64 else torch.float32
    assert result.centroids.dtype == expected and result.inertia.dtype == expected
    km = KMeans(3).fit(x)
    assert km.assign(x).dtype == torch.long
    assert torch.equal(km.assign(x), km.assign(x.double()))  # promoted comparison


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


@settings(max_examples=examples(25))
@given(cloud=point_clouds(), queries=st.integers(1, 9), data=st.data())
def test_module_assign_is_the_nearest_centroid(cloud, queries, data):
    x, k = cloud
    km = KMeans(k, num_iters=3, seed=data.draw(st.integers(0, 100)), chunk_size=2).fit(x)
    z = data.draw(float_tensors((queries, x.shape[1]), low=-6.0, high=6.0))
    assert_nearest(z, km.centroids, km.assign(z))
    assert torch.equal(km(z), km.assign(z))


def test_module_fit_matches_the_function_with_its_seed_and_repeats():
    x = torch.randn(80, 3, generator=seeded(0), dtype=torch.float64)
    km = KMeans(4, num_iters=5, num_redo=2, seed=11).fit(x)
    expected = k_means(x, 4, num_iters=5, num_redo=2, generator=seeded(11))
    assert torch.equal(km.centroids, expected.centroids)
    assert torch.equal(km.inertia, expected.inertia)
    again = km.centroids.clone()
    assert torch.equal(km.fit(x).centroids, again)  # the same seed on every fit, as faiss


def test_module_warm_start_starts_the_next_fit_from_its_centroids():
    """ICLRec's faiss.Clustering keeps its centroids between epochs; ``warm_start`` does that."""
    x = torch.randn(80, 3, generator=seeded(0), dtype=torch.float64)
    moved = x + 0.1 * torch.randn(80, 3, generator=seeded(1), dtype=torch.float64)
    warm = KMeans(4, num_iters=3, num_redo=2, seed=5, warm_start=True)
    first = warm.fit(x).centroids.clone()
    # the first fit has nothing to start from: random points, as without warm_start
    assert torch.equal(first, KMeans(4, num_iters=3, num_redo=2, seed=5).fit(x).centroids)
    expected = k_means(moved, 4, num_iters=3, num_redo=2, init=first, generator=seeded(5))
    assert torch.equal(warm.fit(moved).centroids, expected.centroids)
    cold = k_means(moved, 4, num_iters=3, num_redo=2, generator=seeded(5))
    assert torch.equal(KMeans(4, num_iters=3, num_redo=2, seed=5).fit(x).fit(moved).centroids, cold.centroids)
    # another width cannot start from these centroids: random points again
    wide = torch.randn(30, 5, generator=seeded(2), dtype=torch.float64)
    assert torch.equal(warm.fit(wide).centroids, KMeans(4, num_iters=3, num_redo=2, seed=5).fit(wide).centroids)
    assert "warm_start=True" in repr(warm)


def test_warm_start_refuses_centroids_of_another_count():
    """Centroids set or loaded by hand with other than ``num_clusters`` rows once became the
    number of clusters, silently (or an IndexError with none)."""
    x = torch.randn(40, 3, generator=seeded(0))
    for rows in (0, 3, 5):
        warm = KMeans(4, warm_start=True)
        warm.centroids = torch.randn(rows, 3, generator=seeded(1))
        with pytest.raises(ValueError, match=f"centroids have {rows} rows, this KMeans has num_clusters = 4"):
            warm.fit(x)


def test_module_state_dict_round_trip_and_device_moves():
    x = torch.randn(50, 6, generator=seeded(0))
    km = KMeans(5, seed=3).fit(x)
    state = km.state_dict()
    assert set(state) == {"centroids"} and state["centroids"].shape == (5, 6)
    fresh = KMeans(5)
    assert not fresh.fitted
    fresh.load_state_dict(state)
    assert fresh.fitted and torch.equal(fresh.centroids, km.centroids)
    assert torch.equal(fresh.assign(x), km.assign(x))
    assert fresh.double().centroids.dtype == torch.float64
    with pytest.raises(RuntimeError, match="centroids"):
        KMeans(4).load_state_dict(state)  # k differs


def test_fit_does_not_track_gradients():
    x = torch.randn(30, 2, requires_grad=True)
    km = KMeans(3).fit(x)
    assert not km.centroids.requires_grad and km.assign(x).shape == (30,)


# --------------------------------------------------------------------------------------------
# Distributed: two gloo processes
# --------------------------------------------------------------------------------------------

SHARDS = (23, 14)  # unequal on purpose
FAR_INIT = torch.tensor([[0.0, 0.0, 0.0], [1e3, 1e3, 1e3], [-1e3, -1e3, -1e3]], dtype=torch.float64)
"""Two centroids far from every point: both clusters are empty and get split (random choices)."""
WORLD_SIZE = len(SHARDS)


def _distributed_worker(rank: int, init_file: str, out_dir: str, x: torch.Tensor) -> None:
    """Runs in a spawned process: this rank's shard through the distributed path."""
    with gloo_group(rank, WORLD_SIZE, init_file):
        start = sum(SHARDS[:rank])
        local = x[start : start + SHARDS[rank]]
        # different local generator states: only rank 0's may matter
        result = k_means(local, 5, num_iters=8, num_redo=2, generator=seeded(100 + rank),
                         distributed=True)
        sampled = k_means(local, 5, num_iters=4, generator=seeded(200 + rank),
                          distributed=True, max_points_per_centroid=3)
        km = KMeans(5, num_iters=6, seed=4, distributed=True).fit(local)
        split = k_means(local, 3, num_iters=3, init=FAR_INIT, generator=seeded(300 + rank),
                        distributed=True)
        torch.save(
            {"result": tuple(result), "sampled": tuple(sampled), "module": km.centroids,
             "assign": km.assign(local), "split": split.centroids},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_distributed_equals_the_concatenated_data():
    # integer-valued points: all-reduced sums are exact, so results agree to the last bit
    g = seeded(5)
    x = torch.randint(-20, 21, (sum(SHARDS), 3), generator=g).double()
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rdv")
        spawn(_distributed_worker, (init_file, tmp, x), WORLD_SIZE, init_file)
        parts = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD_SIZE)]
    expected = k_means(x, 5, num_iters=8, num_redo=2, generator=seeded(100))
    sampled = k_means(x, 5, num_iters=4, generator=seeded(200), max_points_per_centroid=3)
    module = KMeans(5, num_iters=6, seed=4).fit(x)
    split = k_means(x, 3, num_iters=3, init=FAR_INIT, generator=seeded(300))
    for part in parts:  # identical on every rank ...
        assert torch.equal(part["split"], split.centroids)
        assert torch.equal(part["result"][0], expected.centroids)  # ... and = one process
        torch.testing.assert_close(part["result"][2], expected.inertia, rtol=1e-12, atol=0)
        assert torch.equal(part["sampled"][0], sampled.centroids)
        assert torch.equal(part["module"], module.centroids)
    assignments = torch.cat([part["result"][1] for part in parts])
    assert torch.equal(assignments, expected.assignments)
    assert torch.equal(torch.cat([part["assign"] for part in parts]), module.assign(x))
    # the all-reduce mattered: rank 0's shard alone clusters differently
    alone = k_means(x[: SHARDS[0]], 5, num_iters=8, num_redo=2, generator=seeded(100))
    assert not torch.equal(alone.centroids, expected.centroids)


def test_distributed_without_a_process_group_runs_locally():
    x = torch.randn(20, 2, generator=seeded(0))
    a = k_means(x, 3, generator=seeded(1), distributed=True)
    b = k_means(x, 3, generator=seeded(1))
    assert torch.equal(a.centroids, b.centroids)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "match"),
    [
        ([[1.0, 2.0]], {}, TypeError, "x must be a torch.Tensor"),
        (torch.ones(4), {}, ValueError, r"x must have shape \(n, d\)"),
        (torch.ones(4, 2, dtype=torch.long), {}, TypeError, "x must be a floating-point"),
        (torch.ones(4, 0), {}, ValueError, "d >= 1"),
        (torch.ones(1, 2), {}, ValueError, "at least num_clusters=2 points, got 1"),
        (torch.tensor([[0.0, float("nan")]] * 3), {}, ValueError, "x must be finite"),
        (torch.tensor([[0.0, float("inf")]] * 3), {}, ValueError, "x must be finite"),
        (torch.ones(4, 2), {"num_iters": -1}, ValueError, "num_iters must be >= 0"),
        (torch.ones(4, 2), {"num_iters": 2.0}, TypeError, "num_iters must be an int"),
        (torch.ones(4, 2), {"num_redo": 0}, ValueError, "num_redo must be >= 1"),
        (torch.ones(4, 2), {"num_redo": True}, TypeError, "num_redo must be an int"),
        (torch.ones(4, 2), {"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
        (torch.ones(4, 2), {"max_points_per_centroid": 0}, ValueError, "max_points_per_centroid"),
        (torch.ones(4, 2), {"distributed": 1}, TypeError, "distributed must be a bool"),
        (torch.ones(4, 2), {"init": torch.ones(3, 2)}, ValueError, r"init must have shape \(k, d\)"),
        (torch.ones(4, 2), {"init": torch.ones(2, 2, dtype=torch.long)}, TypeError, "init must be"),
    ],
)
def test_bad_inputs(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        k_means(x, 2, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0,), {}, ValueError, "num_clusters must be >= 1"),
        ((True,), {}, TypeError, "num_clusters must be an int"),
        ((2.0,), {}, TypeError, "num_clusters must be an int"),
        ((2,), {"seed": -1}, ValueError, "seed must be >= 0"),
        ((2,), {"num_iters": -1}, ValueError, "num_iters must be >= 0"),
        ((2,), {"warm_start": 1}, TypeError, "warm_start must be a bool"),
        ((2, 20), {}, TypeError, "positional"),
    ],
)
def test_module_rejects_bad_hyper_parameters(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        KMeans(*args, **kwargs)


def test_module_assign_errors():
    with pytest.raises(RuntimeError, match="call fit"):
        KMeans(2).assign(torch.ones(3, 2))
    km = KMeans(2).fit(torch.randn(10, 3))
    with pytest.raises(ValueError, match="d = 3 columns"):
        km.assign(torch.ones(3, 2))
    with pytest.raises(TypeError, match="floating-point"):
        km.assign(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(b, d\)"):
        km.assign(torch.ones(3))


def test_assign_refuses_non_finite_centroids_while_checks_are_on():
    km = KMeans(3)
    km.load_state_dict({"centroids": torch.tensor([[0.0, 0.0], [float("nan"), 0.0], [5.0, 5.0]])})
    x = torch.tensor([[0.1, 0.0], [4.0, 4.0], [100.0, 100.0]])
    with pytest.raises(ValueError, match="centroids must be finite"):
        km.assign(x)
    set_validate_args(False)
    try:
        km.assign(x)  # trusted: nothing is read
    finally:
        set_validate_args(True)


def test_finiteness_is_a_value_check_behind_the_switch():
    x = torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [2.0, 2.0]])
    set_validate_args(False)
    try:
        k_means(x, 2, generator=seeded(0))  # trusted: no check, no error
    finally:
        set_validate_args(True)
    with pytest.raises(ValueError, match="finite"):
        k_means(x, 2)
