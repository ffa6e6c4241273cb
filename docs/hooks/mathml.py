"""MkDocs hook: render every formula to MathML at build time, so pages need no script or network.

``pymdownx.arithmatex`` (generic mode) leaves formulas in the HTML as
``<span class="arithmatex">\\(...\\)</span>`` (inline) and ``<div class="arithmatex">\\[...\\]</div>``
(display); docstrings that use reStructuredText's ``:math:`...``` role reach the page as
``:math:<code>...</code>``. This hook replaces all three with MathML produced by
`latex2mathml <https://pypi.org/project/latex2mathml/>`_, which every current browser draws
natively (MathML Core). It runs in ``on_page_content``, after mkdocstrings has rendered the API
pages, so docstrings are covered too. A formula that does not convert is logged as a warning,
which fails ``mkdocs build --strict``.

The hook also shows the package version (``s4rec_components.__version__``) in the footer of
every page and replaces ``{{ version }}`` in the Markdown pages by it.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.mathml")

_ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
_RST_MATH = re.compile(r":math:<code>(.*?)</code>", re.S)
_DELIMITERS = {"span": (r"\(", r"\)"), "div": (r"\[", r"\]")}


def to_mathml(tex: str, *, display: bool, where: str = "") -> str:
    """MathML for one TeX formula; the TeX itself (escaped) if it cannot be converted."""
    try:
        mathml = convert(tex.strip(), display="block" if display else "inline")
    except Exception as error:  # latex2mathml raises several exception types
        log.warning("%s: formula %r does not convert to MathML: %s", where, tex, error)
        return f'<code class="tex-source">{html.escape(tex)}</code>'
    if display:
        # A scrolling box: a wide formula scrolls sideways instead of overflowing a phone screen.
        return f'<div class="math-display">{mathml}</div>'
    return f'<span class="math-inline">{mathml}</span>'


def render_math(content: str, where: str = "") -> str:
    """Replace the arithmatex spans/divs and ``:math:`` roles of a page by MathML."""

    def arithmatex(match: re.Match[str]) -> str:
        tag, body = match.group(1), html.unescape(match.group(2)).strip()
        opening, closing = _DELIMITERS[tag]
        if body.startswith(opening) and body.endswith(closing):
            body = body[len(opening) : -len(closing)]
        return to_mathml(body, display=tag == "div", where=where)

    def rst_math(match: re.Match[str]) -> str:
        return to_mathml(html.unescape(match.group(1)), display=False, where=where)

    content = _ARITHMATEX.sub(arithmatex, content)
    return _RST_MATH.sub(rst_math, content)


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    return render_math(html_text, where=page.file.src_uri)


def on_config(config: Any, **kwargs: Any) -> Any:
    """Show the package version in every page's footer and offer it to pages as ``{{ version }}``."""
    import s4rec_components

    version = s4rec_components.__version__
    config.extra["version"] = version
    config.copyright = f"s4rec-components {version} · Apache-2.0"
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    return markdown.replace("{{ version }}", str(config.extra["version"]))
