"""Paired significance test of two models on the same users (the paper's "*" in Table 2).

The paper marks a score with "*" when a paired t-test over users against the best baseline
gives p < 0.01. This script runs that test on the per-user ranks that ``evaluate.py --output``
writes for two models (same data, same split):

    d_u = m(A, u) - m(B, u)       one user's metric under model A minus under model B
    t   = mean(d) / (sd(d) / sqrt(n))
    p   = 2 P(T > |t|),  T ~ Student's t with n - 1 degrees of freedom

with ``m`` one user's HR@k (``1[r < k]``, r the 0-based rank) or NDCG@k (``1[r < k] / log2(r + 2)``)
and ``sd`` the sample standard deviation over the n users. The 95% interval of the mean
difference is ``mean(d) ± q sd(d) / sqrt(n)``, q the 0.975 quantile of the same T.

What it does and does not test: the test set's users are the sample, the two trained models
are fixed. A small p says that these two checkpoints rank the test items differently on
average, not that one training recipe beats the other: two seeds of the same recipe can differ
"significantly" by this test. Compare recipes over seeds (``report.py``'s mean ± std) as well.

Example:
    python examples/s4rec/evaluate.py --checkpoint runs/a/best.pt --data Beauty --output a.pt
    python examples/s4rec/evaluate.py --checkpoint runs/b/best.pt --data Beauty --output b.pt
    python examples/s4rec/compare.py a.pt b.pt

Needs scipy (Student's t distribution), part of the ``examples`` extra.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from s4rec_components import ranking_metrics

from . import cli_common as common
from .checkpoint import load_tensor_file
from .evaluate import METRIC_DIGITS

__all__ = ["PairedTest", "PerUserRanks", "main", "paired_t_test", "per_user_gains", "read_per_user"]

DEFAULT_KS = (5, 10, 20)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PerUserRanks:
    """One model's 0-based test (or valid) rank of every user, sorted by user id.

    Attributes:
        user_ids: ``(u,)`` int64, strictly increasing.
        ranks: ``(u,)`` int64, >= 0, in the order of ``user_ids``.
        lengths: ``(u,)`` int64 sequence lengths in the same order, or ``None`` when not recorded.
        split: ``"test"`` or ``"valid"``.
        source: the model that ranked, as ``evaluate.py`` recorded it (``""`` when not recorded).
        data: the data it ranked (``--data``; ``""`` when not recorded).
        label: the model's recipe and seed (``""`` when not recorded).
        results_file: its run's file in docs/results (``""`` when not recorded or not finished).
    """

    user_ids: torch.Tensor
    ranks: torch.Tensor
    split: str
    lengths: torch.Tensor | None = None
    source: str = ""
    data: str = ""
    label: str = ""
    results_file: str = ""


@dataclass(frozen=True)
class PairedTest:
    """One metric's paired t-test of model A against model B over the same users."""

    metric: str
    a: float
    b: float
    difference: float
    low: float
    high: float
    t: float
    p: float
    users: int


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
MAX_VALUE = 2**62  # ids, ranks and lengths beyond it are no catalogue's; int64 holds them with room
MAX_CUTOFF = 10_000


def _integer_column(value: Any, name: str, source: str) -> torch.Tensor:
    """``value`` (a JSON list or a tensor of a ``.pt`` file) as a 1-D int64 tensor of values in
    ``[-MAX_VALUE, MAX_VALUE]``, or one ``UsageError`` that says what arrived."""
    if value is None:
        raise common.UsageError(f"{source}: no {name!r} column")
    if isinstance(value, list):
        for i, v in enumerate(value):
            if not isinstance(v, int) or isinstance(v, bool) or abs(v) > MAX_VALUE:
                got = "missing" if v is None else f"{type(v).__name__} {str(v)[:40]}"
                raise common.UsageError(f"{source}: users[{i}] {name!r} must be an integer up to 2**62, got {got}")
        return torch.tensor(value, dtype=torch.long)
    if (not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.dtype not in _INTEGER_DTYPES
            or value.dim() != 1):
        got = f"{value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise common.UsageError(f"{source}: {name!r} must be a 1-D integer tensor, got a {got}")
    column: torch.Tensor = value.to(torch.long)
    if column.numel() and int(column.abs().max()) > MAX_VALUE:
        raise common.UsageError(f"{source}: {name!r} holds a value beyond 2**62")
    return column


def read_per_user(path: str | Path) -> PerUserRanks:
    """The per-user ranks that ``evaluate.py --output`` wrote, as ``.pt`` or ``.json``, checked.

    A ``.pt`` file is read with ``weights_only=True`` (never unpickled beyond tensors); both
    formats must hold a ``split`` name, unique user ids and non-negative ranks, one per user.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir() or not path.is_file():
        raise common.UsageError(f"{source}: no such file (pass a file written by evaluate.py --output)")
    if path.suffix == ".pt":
        data = load_tensor_file(path, hint="pass a file written by evaluate.py --output")
        if not isinstance(data, dict):
            raise common.UsageError(f"{source}: not a per-user file of evaluate.py --output (a {type(data).__name__})")
        user_ids, ranks, lengths = data.get("user_id"), data.get("rank"), data.get("length")
    elif path.suffix == ".json":
        data = common.read_json(path, "compare.py")
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
            got = type(data).__name__ if not isinstance(data, dict) else f"'users' a {type(users).__name__}"
            raise common.UsageError(
                f"{source}: not a per-user file of evaluate.py --output (no 'users' list of objects; {got})"
            )
        user_ids, ranks = [u.get("user_id") for u in users], [u.get("rank") for u in users]
        lengths = [u["length"] for u in users] if all("length" in u for u in users) else None
    else:
        raise common.UsageError(f"{source}: must end in .pt or .json (what evaluate.py --output writes)")
    split = data.get("split")
    if split not in ("valid", "test"):
        raise common.UsageError(f"{source}: 'split' must be 'valid' or 'test', got {str(split)[:40]!r}")
    user_ids, ranks = _integer_column(user_ids, "user_id", source), _integer_column(ranks, "rank", source)
    if user_ids.numel() == 0 or user_ids.shape != ranks.shape:
        raise common.UsageError(
            f"{source}: expected one rank per user, got {user_ids.numel()} user ids and {ranks.numel()} ranks"
        )
    if int(ranks.min()) < 0:
        raise common.UsageError(f"{source}: ranks must be >= 0, got {int(ranks.min())}")
    if lengths is not None:
        lengths = _integer_column(lengths, "length", source)
        if lengths.shape != user_ids.shape:
            raise common.UsageError(f"{source}: expected one length per user, got {lengths.numel()}")
    user_ids, order = torch.sort(user_ids)
    repeated = (user_ids[1:] == user_ids[:-1]).nonzero()
    if repeated.numel():
        raise common.UsageError(f"{source}: user id {int(user_ids[int(repeated[0, 0])])} appears twice")
    texts = {key: data.get(key, "") for key in ("source", "data", "label", "results_file")}
    for key, text in texts.items():
        if not isinstance(text, str):
            raise common.UsageError(f"{source}: {key!r} must be a string")
    return PerUserRanks(user_ids=user_ids, ranks=ranks[order], split=split,
                        lengths=None if lengths is None else lengths[order],
                        **{key: text[:1000] for key, text in texts.items()})


def per_user_gains(ranks: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hit, ndcg)``, each ``(u,)`` float64: every user's HR@k and NDCG@k from 0-based ranks.

    Their means are ``ranking_metrics``' HR@k and NDCG@k (up to float rounding).
    """
    hit = (ranks < k).to(torch.float64)
    return hit, hit / torch.log2(ranks.to(torch.float64) + 2.0)


def paired_t_test(metric: str, a: torch.Tensor, b: torch.Tensor) -> PairedTest:
    """Two-sided paired t-test of ``a - b`` (each ``(u,)`` float64, ``u >= 2``, the same users).

    Raises:
        ValueError: if ``a`` and ``b`` are not 1-D of one length >= 2.
    """
    from scipy import stats

    if a.dim() != 1 or a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"expected two (u,) tensors with u >= 2, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    d = a - b
    n = d.numel()
    mean = float(d.mean())
    se = float(d.std(correction=1)) / math.sqrt(n)
    quantile = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))
    if se <= 1e-12 * abs(mean) or se == 0.0:  # every user differs by the same amount (identical models: by zero)
        t, p = (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    else:
        t = mean / se
        p = float(2.0 * stats.t.sf(abs(t), n - 1))
    return PairedTest(metric, float(a.mean()), float(b.mean()), mean, mean - quantile * se, mean + quantile * se, t, p, n)


def compare(first: PerUserRanks, second: PerUserRanks, ks: tuple[int, ...], labels: tuple[str, str]) -> list[PairedTest]:
    """Every HR@k and NDCG@k of ``ks``, A = ``first`` against B = ``second``, user by user."""
    from .data import dataset_label

    if first.data and second.data and dataset_label(first.data) != dataset_label(second.data):
        raise common.UsageError(
            f"{labels[0]} ranks --data {first.data[:200]!r} and {labels[1]} --data {second.data[:200]!r}"
        )
    if first.split != second.split:
        raise common.UsageError(f"{labels[0]} ranks the {first.split} split and {labels[1]} the {second.split} split")
    if not torch.equal(first.user_ids, second.user_ids):
        only_a = int((~torch.isin(first.user_ids, second.user_ids)).sum())
        only_b = int((~torch.isin(second.user_ids, first.user_ids)).sum())
        raise common.UsageError(
            f"the two files rank different users ({first.user_ids.numel()} and {second.user_ids.numel()}; "
            f"{only_a} only in {labels[0]}, {only_b} only in {labels[1]}): evaluate both models on the same data"
        )
    if first.lengths is not None and second.lengths is not None and not torch.equal(first.lengths, second.lengths):
        differ = int((first.lengths != second.lengths).sum())
        raise common.UsageError(f"the two files' users have other sequence lengths for {differ} user(s): not the same data")
    if first.user_ids.numel() < 2:
        raise common.UsageError("a paired t-test needs at least 2 users")
    # the library's exact means, rounded as train.py and evaluate.py store them (so the page's
    # columns read as the run files do)
    means = [{k: round(v, METRIC_DIGITS) for k, v in ranking_metrics(r.ranks, ks=ks).items()} for r in (first, second)]
    gains = {k: (per_user_gains(first.ranks, k), per_user_gains(second.ranks, k)) for k in ks}
    tests = []
    for index, kind in enumerate(("HR", "NDCG")):  # per_user_gains returns (hit, ndcg)
        for k in ks:
            test = paired_t_test(f"{kind}@{k}", gains[k][0][index], gains[k][1][index])
            tests.append(PairedTest(**{**asdict(test), "a": means[0][test.metric], "b": means[1][test.metric]}))
    return tests


def format_tests(tests: list[PairedTest]) -> str:
    header = ("metric", "A", "B", "A - B", f"{CONFIDENCE:.0%} interval of A - B", "t", "p")
    rows = [
        (
            t.metric, f"{t.a:.4f}", f"{t.b:.4f}", f"{t.difference:+.4f}", f"[{t.low:+.4f}, {t.high:+.4f}]",
            f"{t.t:.2f}", f"{t.p:.2g}" + (" *" if t.p < 0.01 else ""),
        )
        for t in tests
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (header, *rows))


def _cutoffs(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 5,10,20, got {text!r}") from None
    if any(not 1 <= k <= MAX_CUTOFF for k in ks) or len(set(ks)) != len(ks):
        raise argparse.ArgumentTypeError(f"cut-offs must be distinct and within 1..{MAX_CUTOFF}, got {text!r}")
    return ks


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser("compare.py", __doc__)
    parser.add_argument("a", metavar="A", help="model A's per-user ranks (evaluate.py --output, .pt or .json)")
    parser.add_argument("b", metavar="B", help="model B's per-user ranks, on the same users and split")
    parser.add_argument("--ks", type=_cutoffs, default=",".join(map(str, DEFAULT_KS)), help="cut-offs, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the tests as one JSON list instead of the table")
    parser.add_argument("--output", default=None,
                        help="also write a .json record: the command, commit, both files' sources and the tests")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _json_tests(tests: list[PairedTest]) -> list[dict[str, Any]]:
    """The tests as JSON objects; an infinite t (every user differs by the same non-zero amount) is null."""
    return [{k: None if isinstance(v, float) and math.isinf(v) else v for k, v in asdict(t).items()} for t in tests]


def _run(args: argparse.Namespace, argv: list[str]) -> list[PairedTest]:
    if args.output is not None:
        common.check_output_file(args.output, (".json",))
    try:
        import scipy  # noqa: F401
    except ImportError:
        raise common.UsageError("needs scipy for Student's t distribution: pip install scipy") from None
    first, second = read_per_user(args.a), read_per_user(args.b)
    tests = compare(first, second, tuple(args.ks), ("A", "B"))
    if args.output is not None:
        import shlex

        from .checkpoint import atomic_write_text
        from .cli import git_commit

        files = {
            name: {"file": str(path), "source": ranks.source, "label": ranks.label, "results_file": ranks.results_file,
                   "split": ranks.split, "users": ranks.user_ids.numel()}
            for name, path, ranks in (("A", args.a, first), ("B", args.b, second))
        }
        record = {"command": "python examples/s4rec/compare.py " + shlex.join(argv), "git_commit": git_commit(),
                  "data": first.data or second.data, "split": first.split,
                  "method": "paired t-test over users, two-sided", "confidence": CONFIDENCE, "files": files,
                  "tests": _json_tests(tests)}
        atomic_write_text(args.output, json.dumps(record, indent=1) + "\n")
    if args.json:
        print(json.dumps(_json_tests(tests)))
    else:
        print(f"A: {args.a}\nB: {args.b}\n{first.split} split, {first.user_ids.numel()} users, "
              f"paired t-test (two-sided; * p < 0.01, the paper's mark)\n")
        print(format_tests(tests))
    return tests


def main(argv: list[str] | None = None) -> list[PairedTest]:
    """``compare.py``'s command line; exits with status 2 and one line on stderr on bad input."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return common.run_guarded(lambda: _run(args, argv), debug=args.debug, prog="compare.py")
