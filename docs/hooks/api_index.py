"""MkDocs hook: the API index page lists every public name, generated from the package.

The page ``api/index.md`` carries a marker comment; this hook replaces it with one table per
module: each name of ``s4rec_components.__all__``, the first line of its docstring, and a
cross-reference (``[name][s4rec_components.module.name]``) that mkdocs-autorefs resolves to the
entry on the module's page. A name without a page fails ``mkdocs build --strict``, so the index
cannot silently fall behind ``__all__``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

MARKER = "<!-- api-index"


def summary(value: Any) -> str:
    """The first line of an object's own docstring (constants get their value instead)."""
    if inspect.isclass(value) or inspect.isroutine(value):
        doc = inspect.getdoc(value) or ""
        line = doc.strip().splitlines()[0] if doc.strip() else ""
        return line.replace("|", "\\|")
    return f"constant, `{value!r}`"


def api_index() -> str:
    import s4rec_components

    by_module: dict[str, list[str]] = {}
    for name, module in s4rec_components._EXPORTS.items():
        by_module.setdefault(module, []).append(name)
    lines: list[str] = []
    for module in sorted(by_module, key=lambda m: m.lstrip("_")):
        page = module.split(".")[0].lstrip("_")
        lines += [
            f"## [{module.lstrip('_')}]({page}.md)",
            "",
            "| name | what it is |",
            "|---|---|",
        ]
        for name in sorted(by_module[module], key=str.lower):
            # From the defining module: a package attribute can be shadowed by a submodule of the
            # same name (``s4rec_components.kmeans`` the module vs ``kmeans`` the function).
            value = getattr(importlib.import_module(f"s4rec_components.{module}"), name)
            identifier = f"s4rec_components.{module}.{name}"
            if inspect.isclass(value) or inspect.isroutine(value):
                # The defining module (e.g. data.dataset for what data re-exports).
                identifier = f"{value.__module__}.{name}"
                link = f"[`{name}`][{identifier}]"      # autorefs: fails the strict build if missing
            else:                                         # constants may have no entry of their own
                link = f"[`{name}`]({page}.md#{identifier})"
            lines.append(f"| {link} | {summary(value)} |")
        lines.append("")
    lines += [
        "## Package",
        "",
        "| name | what it is |",
        "|---|---|",
        f"| `__version__` | the installed version, `{s4rec_components.__version__}` |",
        "",
    ]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != "api/index.md":
        return markdown
    head, marker, tail = markdown.partition(MARKER)
    if not marker:
        raise ValueError("api/index.md lost its '<!-- api-index' marker")
    tail = tail.partition("-->")[2]
    return head + api_index() + tail
