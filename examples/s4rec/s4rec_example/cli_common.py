"""What train.py, evaluate.py, report.py and headtail.py share: flags, devices, errors, logging."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import logging
import math
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch

from .data import DATASET_NAMES

__all__ = [
    "EXIT_USAGE",
    "UsageError",
    "add_data_arguments",
    "add_runtime_arguments",
    "flushes_denormals",
    "keep_freed_memory",
    "make_parser",
    "parse_device",
    "positive_int",
    "restored_torch_settings",
    "run_guarded",
    "set_threads",
    "setup_console_logging",
    "show_progress",
]

EXIT_USAGE = 2
T = TypeVar("T")


class UsageError(Exception):
    """A bad argument, file or combination: one line on stderr and exit status 2."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every default; flags whose default comes from the preset say so."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action.default, _FromPreset):
            return text + f" (default: {action.default!r})"
        if action.nargs == 0:
            return text + (" (default: off)" if action.default in (False, None) else " (default: on)")
        return text + " (default: %(default)s)"


class _FromPreset:
    """Default of a flag whose value the preset decides; shows the values per preset."""

    def __init__(self, text: str = "from --preset") -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


FROM_PRESET: Any = _FromPreset()


def from_preset(field: str) -> Any:
    """The default marker of a preset-controlled flag, e.g. ``0 (s4rec, s4rec-no-gr: 0.01)``."""
    from .config import PRESETS, TrainConfig

    base = getattr(TrainConfig(), field)
    groups: dict[str, list[str]] = {}
    for name in PRESETS:
        value = getattr(TrainConfig.from_preset(name), field)
        if value != base:
            shown = ",".join(value) if isinstance(value, tuple) else str(value)
            groups.setdefault(shown, []).append(name)
    shown_base = ",".join(base) if isinstance(base, tuple) else str(base)
    if field == "epochs":
        shown_base = "300 on real data, 20 on generated data, times batch-size / 256 when that is more than 1"
    parts = [f"{', '.join(names)}: {value}" for value, names in groups.items()]
    return _FromPreset(shown_base + (f"; {'; '.join(parts)}" if parts else ""))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def pyplot(log: logging.Logger, skipped: str) -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or ``None`` (with a warning on ``log``
    that ``skipped`` is skipped) when matplotlib, the examples' optional extra, is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: %s skipped (pip install matplotlib)", skipped)
        return None
    return plt


def make_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=doc, formatter_class=_Formatter)


# ---------------------------------------------------------------------------- value types
def _int_at_least(minimum: int, text: str) -> int:
    """``text`` as an int >= ``minimum``, or the argparse error that names what was expected."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(1, text)


def nonnegative_int(text: str) -> int:
    return _int_at_least(0, text)


MAX_GENERATED = 10_000_000
"""Most users or items of generated data: a setting read back from a file (``--resume``'s
``config.json``, a checkpoint that ``evaluate.py`` regenerates the data of) cannot make the
generator allocate without bound."""


def generated_count(text: str) -> int:
    """A count of generated users or items: an int in ``[1, MAX_GENERATED]``."""
    value = _int_at_least(1, text)
    if value > MAX_GENERATED:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_GENERATED:,} (generated data), got {value:,}")
    return value


def is_finite_number(value: object) -> bool:
    """A finite int or float read back from JSON (a bool, a string, NaN, infinity or an int
    beyond float range such as ``10**400`` is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def probability(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def open_probability(text: str) -> float:
    value = _float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {value}")
    return value


# ---------------------------------------------------------------------------- shared flags
def add_data_arguments(parser: argparse.ArgumentParser, *, default: str) -> None:
    """``--data`` (optional; ``default`` says what its absence means) and ``--data-root``."""
    parser.add_argument(
        "--data",
        default=None,
        help="one-line-per-user .txt, a RecBole .inter file, or a dataset name "
        f"({', '.join(DATASET_NAMES)}) looked up in --data-root, downloaded there if missing and checked against its public checksum; "
        f"default: {default}",
    )
    parser.add_argument(
        "--data-root",
        default="data",
        help="folder of named datasets; always this call's (a run or checkpoint resumed or evaluated by "
        "name does not bring the folder it was trained with), so pass the same one again",
    )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads; default: torch's choice")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars and time-stamped log lines (bars are off anyway when "
                        "stderr is not a terminal)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def parse_device(text: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``, checked against this machine.

    Raises:
        UsageError: for another spelling, a CPU-only build or a missing GPU.
    """
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise UsageError(f"--device {text!r}: expected cpu, cuda or cuda:N")
        return torch.device("cpu")
    if device.type != "cuda":
        raise UsageError(f"--device {text!r}: expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {text}: this PyTorch build or machine has no CUDA device")
    count = torch.cuda.device_count()
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= count:
        raise UsageError(f"--device {text}: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def set_threads(threads: int | None) -> None:
    """Set torch's CPU threads (``None``: torch's choice) and flush denormal floats to zero.

    Flushing matters for the contrastive terms: at temperature 1 on ``(l * d)``-dimensional views
    the NT-Xent's softmax holds probabilities far below 1e-38, and CPU matrix products on such
    denormal numbers run tens of times slower (measured: 464 ms against 10 ms for the
    ``(2b, 2b) @ (2b, l*d)`` product of the ``cl4srec`` preset's backward, one thread). Values
    that small change no metric. A no-op on CPUs without the instruction (the result is
    recorded in ``results.json`` as ``flush_denormal``).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory in the process instead of handing it back.

    A training step on the CPU allocates and frees the same large activations every step
    (the dense ``iclrec`` step: about 140 MB). By default glibc maps blocks above a threshold
    with ``mmap`` and returns the top of the heap to the kernel when it is free, so every
    step page-faults all of that memory in again: measured 34,000 minor page faults and
    0.43 s against 0 and 0.36 s a step (one thread). This raises the trim threshold to 1 GiB,
    pads heap growth by 256 MiB and serves every block from the heap (no ``mmap``: glibc
    still falls back to it when the heap cannot grow). It changes no number, only how much
    memory the process keeps between steps (at most its peak plus 1 GiB). Process-wide
    and lasting, so only the training command calls it. Returns whether it applied (``False``
    off glibc: macOS, Windows, musl).
    """
    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 256 << 20), (_M_MMAP_MAX, 0))
    return all(mallopt(param, value) == 1 for param, value in settings)


def flushes_denormals() -> bool:
    """Whether CPU float arithmetic flushes denormal numbers to zero in this process now."""
    return (torch.tensor([1e-40]) * 1.0).item() == 0.0


@contextlib.contextmanager
def restored_torch_settings() -> Iterator[None]:
    """Give back torch's thread count and denormal mode on exit.

    :func:`set_threads` changes process-wide state; a command called in-process (a notebook,
    a test, another script) must not leave it changed: flushing denormals breaks code that
    needs IEEE subnormals (hypothesis refuses to draw floats, for one).
    """
    threads, flushing = torch.get_num_threads(), flushes_denormals()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(flushing)


def show_progress(quiet: bool) -> bool:
    """Progress bars only when wanted and stderr is a terminal (never endless lines in a log file)."""
    return not quiet and sys.stderr.isatty()


_HANDLER_TAG = "_s4rec_example"


def setup_console_logging(quiet: bool) -> None:
    """INFO lines on stderr: bare messages, or time-stamped ones with ``--quiet``."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_TAG, "") == "console":
            root.removeHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s" if quiet else "%(message)s")
    )
    setattr(stream, _HANDLER_TAG, "console")
    root.addHandler(stream)


def read_json(path: Path, label: str) -> Any:
    """The JSON value in ``path``; an unreadable or malformed file (nested too deep included) is one
    ``UsageError`` that names ``label`` and the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:  # RecursionError: nested too deep
        raise UsageError(f"{label} {path}: not readable JSON ({type(err).__name__}: {str(err)[:200]})") from None


def check_output_file(value: str, suffixes: tuple[str, ...]) -> None:
    """``--output value`` names a file to write: one of ``suffixes``, in a folder that exists."""
    if Path(value).suffix not in suffixes:
        raise UsageError(f"--output {value!r}: must end in {' or '.join(suffixes)} (the format written)")
    if not Path(value).resolve().parent.is_dir():
        raise UsageError(f"--output {value!r}: the folder does not exist")


def run_guarded(body: Callable[[], T], *, debug: bool, prog: str) -> T:
    """Run ``body``; a user error becomes one line on stderr and exit status 2 (``--debug``: traceback)."""
    from s4rec_components import DownloadError

    from .checkpoint import CheckpointError

    expected = (UsageError, CheckpointError, DownloadError, FileNotFoundError, FileExistsError, NotADirectoryError,
                IsADirectoryError, PermissionError, ValueError, TypeError)
    try:
        return body()
    except expected as err:
        if debug:
            traceback.print_exc()
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, (ValueError, TypeError)) and not isinstance(err, (UsageError, CheckpointError)):
            message = f"{type(err).__name__}: {message}"
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
