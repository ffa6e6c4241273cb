"""MkDocs hook: reStructuredText cross-reference roles in docstrings become links.

mkdocstrings' Google-style parser leaves ``:func:`~s4rec_components.x.f``` as the text
``:func:`` followed by ``<code>~s4rec_components.x.f</code>``. This hook turns such a role into
an optional mkdocs-autorefs reference (``<autoref optional identifier=...>``), which autorefs
resolves to the object's entry on its API page after all pages are rendered, or leaves as plain
code when there is none (``torch.Tensor``). A name without a module is looked up among the
package's public names.
"""

from __future__ import annotations

import html
import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc|const):<code>(.*?)</code>", re.S)


def identifier_for(target: str) -> str | None:
    import s4rec_components

    if target.startswith("s4rec_components"):
        return target
    head, _, rest = target.partition(".")
    if head not in s4rec_components._EXPORTS:
        return None
    defining = getattr(getattr(s4rec_components, head), "__module__", None)
    if not isinstance(defining, str) or not defining.startswith("s4rec_components"):
        defining = f"s4rec_components.{s4rec_components._EXPORTS[head]}"
    return f"{defining}.{target}"


def link_roles(content: str) -> str:
    def replace(match: re.Match[str]) -> str:
        target = html.unescape(match.group(1)).strip()
        short = target.startswith("~")
        target = target.lstrip("~").removesuffix("()")
        shown = target.split(".")[-1] if short else target
        code = f"<code>{html.escape(shown)}</code>"
        identifier = identifier_for(target)
        if identifier is None:
            return code
        return f'<autoref optional identifier="{html.escape(identifier)}">{code}</autoref>'

    return _ROLE.sub(replace, content)


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    return link_roles(html_text)
