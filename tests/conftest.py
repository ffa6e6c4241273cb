"""Test configuration: the shared hypothesis profile and the real-data location."""

from __future__ import annotations

from pathlib import Path

import pytest
import strategies  # noqa: F401  (registers and loads the hypothesis profile)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real datasets beside the project; skips the test where it is absent."""
    if not (SHARED_DATA / "Beauty.txt").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA
