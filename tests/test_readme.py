"""The README's usage snippet runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_usage_snippet_runs():
    blocks = python_blocks(README.read_text())
    assert blocks, "README.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    loss = namespace["loss"]
    assert loss.ndim == 0 and bool(loss.isfinite())
    assert namespace["encoder"].item_embeddings.weight.grad is not None


def test_readme_names_the_test_command_that_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    command = "python -m pytest"
    assert command in text and command in ci


def test_every_exported_name_resolves():
    import s4rec_components

    for name in s4rec_components.__all__:
        assert getattr(s4rec_components, name) is not None, name
    with __import__("pytest").raises(AttributeError, match="no attribute"):
        s4rec_components.not_a_name  # noqa: B018
