"""The README's usage snippet runs as written, and its commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_usage_snippet_runs_and_trains_every_part():
    blocks = python_blocks(README.read_text())
    assert blocks, "README.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    loss = namespace["loss"]
    assert loss.ndim == 0 and bool(loss.isfinite())
    # The gradient reached the encoder and the prototypes (which the optimiser holds).
    assert all(p.grad is not None for p in namespace["encoder"].parameters() if p.requires_grad)
    assert all(p.grad is not None for p in namespace["clusters"].parameters())
    held = {id(p) for group in namespace["optimizer"].param_groups for p in group["params"]}
    assert {id(p) for p in namespace["clusters"].parameters()} <= held


def test_readme_uses_the_recommended_settings():
    snippet = python_blocks(README.read_text())[0]
    assert 'IntentInfoNCE(temperature=1.0, similarity="dot")' in snippet
    assert "0.1 *" in snippet, "the self-supervised terms are weighted, not summed raw"
    assert "clusters.parameters()" in snippet


def test_readme_names_the_test_command_that_ci_runs():
    text = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python -m pytest"
    assert command in text and command in ci
    # CI runs it verbatim, on a line of its own.
    assert re.search(r"^python -m pytest$", ci, flags=re.M)


def test_all_is_written_out_and_matches_the_lazy_table():
    """``__all__`` is a literal list (type checkers cannot evaluate ``sorted(_EXPORTS)``), it
    names exactly the lazily resolved names, and the ``TYPE_CHECKING`` block imports each one."""
    import ast

    import s4rec_components

    source = Path(s4rec_components.__file__).read_text()
    tree = ast.parse(source)
    literal = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert len(literal) == 1 and isinstance(literal[0], ast.List), "__all__ must be one literal list"
    assert all(isinstance(e, ast.Constant) for e in literal[0].elts)
    assert sorted(s4rec_components.__all__) == sorted([*s4rec_components._EXPORTS, "__version__"])
    assert len(set(s4rec_components.__all__)) == len(s4rec_components.__all__)
    checked = {
        alias.asname or alias.name
        for node in ast.walk(next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert checked == set(s4rec_components._EXPORTS), sorted(checked ^ set(s4rec_components._EXPORTS))


def test_every_exported_name_resolves():
    import importlib
    import types

    import s4rec_components

    for name in s4rec_components.__all__:
        assert getattr(s4rec_components, name) is not None, name
    # Also after every submodule is imported: a submodule named like one of its functions
    # (``kmeans``) must not shadow the function on the package.
    for module in set(s4rec_components._EXPORTS.values()):
        importlib.import_module(f"s4rec_components.{module}")
    for name, module in s4rec_components._EXPORTS.items():
        value = getattr(s4rec_components, name)
        assert not isinstance(value, types.ModuleType), f"s4rec_components.{name} is a module"
        assert value is getattr(importlib.import_module(f"s4rec_components.{module}"), name), name
    with pytest.raises(AttributeError, match="no attribute"):
        s4rec_components.not_a_name  # noqa: B018


def test_every_relative_link_and_image_of_the_readme_is_a_file():
    targets = [t for t in re.findall(r"\]\(([^)\s#]+)", README.read_text()) if "://" not in t]
    assert "docs/img/summary-bce.png" in targets
    assert not [t for t in targets if not (ROOT / t).is_file()]
