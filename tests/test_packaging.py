"""The package builds without warnings and the wheel carries its licence and type marker.

``python -m build`` (sdist, then a wheel from the sdist) runs on a copy of the checkout so that
no ``build/`` or ``*.egg-info`` folder lands in the working tree. It runs without build
isolation when the installed setuptools is new enough (offline machines), else isolated.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    import tomllib

    PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
except ModuleNotFoundError:  # Python 3.10
    PYPROJECT = None
IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "site", "runs", "*.egg-info", "__pycache__", ".hypothesis",
    ".pytest_cache", ".venv", "*.pt",
)


def setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0,)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if importlib.util.find_spec("build") is None:
        pytest.skip('the "build" package is not installed (pip install -e ".[dev]")')
    source = tmp_path_factory.mktemp("src") / "s4rec-components"
    shutil.copytree(ROOT, source, ignore=IGNORE)
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--outdir", str(out), str(source)]
    if setuptools_version() >= (77,):
        command.insert(3, "--no-isolation")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    return out, log


@pytest.mark.slow
def test_build_has_no_warnings(built: tuple[Path, str]):
    _, log = built
    warnings = [line for line in log.splitlines() if re.search(r"warn|deprecat", line, re.I)]
    assert not warnings, "\n".join(warnings)


@pytest.mark.slow
def test_wheel_carries_py_typed_and_the_licence(built: tuple[Path, str]):
    out, _ = built
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "s4rec_components/py.typed" in names
    assert any(re.search(r"\.dist-info/licenses/LICENSE$", n) for n in names), names
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    # The library, its data package, and nothing of the example or the tests.
    assert "s4rec_components/__init__.py" in names
    assert not [n for n in names if n.startswith(("examples/", "tests/", "docs/"))]


@pytest.mark.slow
def test_sdist_carries_the_licence(built: tuple[Path, str]):
    out, _ = built
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(n.endswith("/LICENSE") for n in names)
    assert any(n.endswith("s4rec_components/py.typed") for n in names)


def test_metadata_is_spdx_and_versions_agree():
    if PYPROJECT is None:
        pytest.skip("tomllib needs Python 3.11")
    import s4rec_components

    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert project["version"] == s4rec_components.__version__
    assert (ROOT / "LICENSE").read_text().count("Apache License") >= 1
    assert (ROOT / "s4rec_components" / "py.typed").exists()
    requires = PYPROJECT["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in requires)
    assert PYPROJECT["tool"]["mypy"]["strict"] is True
    assert "slow" in " ".join(PYPROJECT["tool"]["pytest"]["ini_options"]["markers"])


@pytest.mark.slow
def test_user_code_type_checks_against_the_top_level_names(tmp_path: Path):
    """A user's ``mypy --strict`` sees every public name re-exported by ``s4rec_components``
    (a computed ``__all__`` or bare ``from .x import y`` in the ``TYPE_CHECKING`` block would
    give "does not explicitly export attribute" for each), with the signatures' types.

    mypy runs in a subprocess (it changes the interpreter's gc and recursion settings) from the
    repository root, so its cache (``.mypy_cache``, git-ignored) is shared with the CI's check."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip('mypy is not installed (pip install -e ".[dev]")')
    import s4rec_components

    names = sorted(s4rec_components._EXPORTS)
    lines = [
        "import torch",
        f"from s4rec_components import {', '.join(names)}",
        "encoder = SASRecEncoder(num_items=10, max_len=5, hidden_size=8, num_layers=1, num_heads=2)",
        "ids = torch.zeros(2, 5, dtype=torch.long)",
        "hidden: torch.Tensor = encoder(ids)",
        "loss: torch.Tensor = linear_cross_entropy(hidden[:, -1], encoder.item_embeddings.weight, ids[:, 0])",
        "padding: int = PADDING_ID",
        "wrong: str = PADDING_ID  # planted: the one error mypy must report",
    ]
    user = tmp_path / "user_code.py"
    user.write_text("\n".join(lines) + "\n")
    planted = len(lines)
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         "--no-error-summary", "--hide-error-context", str(user)],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    # The one planted error proves the check sees the real types; nothing else may be reported.
    assert len(errors) == 1, done.stdout + done.stderr
    assert f"user_code.py:{planted}:" in errors[0] and "[assignment]" in errors[0], errors[0]
