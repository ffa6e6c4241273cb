"""Test configuration: hypothesis profiles, the ``slow`` marker and the real-data location.

Hypothesis profiles:

* ``default``: what a plain ``pytest`` run uses (40 examples per property, no deadline;
  derandomized when the ``CI`` environment variable is set);
* ``ci``: at least 200 examples per property, selected with
  ``pytest --hypothesis-profile=ci`` (the option of hypothesis' pytest plugin).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# No deadline: torch's first call of an operator is slow and would flake a timed example.
# Under CI (CI=true) the default profile is derandomized, so a CI run is repeatable: the
# examples come from a fixed seed. Local runs draw fresh examples each time.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.register_profile(
    "ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
# The plugin's --hypothesis-profile is applied after this file is imported, so it wins.
settings.load_profile("default")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``slow`` marker (slow tests still run by default)."""
    config.addinivalue_line(
        "markers",
        "slow: takes more than a few seconds (still runs by default; deselect with -m 'not slow')",
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real datasets beside the project; skips the test where it is absent."""
    if not (SHARED_DATA / "Beauty.txt").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _process_float_mode_is_left_alone() -> Iterator[None]:
    """Fail the test that leaves denormal flushing on (and switch it off for the tests after).

    Flushing is process-wide: one leak makes hypothesis refuse every float strategy later in
    the session, so the failure would show up far from its cause.
    """
    yield
    if (torch.tensor([1e-40]) * 1.0).item() == 0.0:
        torch.set_flush_denormal(False)
        pytest.fail("the test left torch.set_flush_denormal(True) set for the rest of the process")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of tiny models: they gain nothing from two, and a shared
    machine loses a lot. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
