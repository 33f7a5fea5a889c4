"""Model Markdown as Telegram HTML: the few tags Telegram knows, everything else escaped.

Rendering goes through a real Markdown parser, so half-written Markdown in the middle of a stream (an
unclosed `**`, an open code fence) comes out as literal text or a closed block, never as broken markup.
"""

from __future__ import annotations

from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough")

_INLINE_TAGS = {"strong": "b", "em": "i", "s": "s"}
_SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:")


def to_html(markdown: str) -> str:
    """Render Markdown for `parse_mode=HTML`; the visible text never grows beyond the source's length."""
    return _blocks(_md.parse(markdown)).strip()


def _blocks(tokens: list[Token]) -> str:
    out: list[str] = []
    depth = 0  # lists open
    for token in tokens:
        kind = token.type
        if kind == "inline":
            out.append(_inline(token.children or []))
        elif kind in ("paragraph_close", "heading_close"):
            if kind == "heading_close":
                out.append("</b>")
            out.append("\n" if depth else "\n\n")
        elif kind == "heading_open":
            out.append("<b>")
        elif kind in ("bullet_list_open", "ordered_list_open"):
            depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
            if not depth:
                out.append("\n")
        elif kind == "list_item_open":
            # Numbers as the model wrote them: renumbering `1. 1. 1.` would make the text longer than its source.
            marker = f"{token.info}{token.markup}" if token.info else "•"
            out.append(f"{'  ' * (depth - 1)}{marker} ")
        elif kind in ("fence", "code_block"):
            language = (token.info or "").split()[0] if token.info else ""
            attribute = f' class="language-{escape(language)}"' if language else ""
            out.append(f"<pre><code{attribute}>{escape(token.content.rstrip(chr(10)))}</code></pre>\n\n")
        elif kind == "blockquote_open":
            out.append("<blockquote>")
        elif kind == "blockquote_close":
            while out and out[-1].endswith("\n"):
                out[-1] = out[-1].rstrip("\n")
            out.append("</blockquote>\n\n")
        elif kind == "hr":
            out.append("———\n\n")
        elif kind in ("html_block",):
            out.append(escape(token.content))
    return "".join(out)


def _inline(tokens: list[Token]) -> str:
    out: list[str] = []
    open_links: list[bool] = []
    for token in tokens:
        kind = token.type
        if kind == "text":
            out.append(escape(token.content, quote=False))
        elif kind == "code_inline":
            out.append(f"<code>{escape(token.content, quote=False)}</code>")
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind.endswith("_open") and kind[:-5] in _INLINE_TAGS:
            out.append(f"<{_INLINE_TAGS[kind[:-5]]}>")
        elif kind.endswith("_close") and kind[:-6] in _INLINE_TAGS:
            out.append(f"</{_INLINE_TAGS[kind[:-6]]}>")
        elif kind == "link_open":
            href = str(token.attrGet("href") or "")
            safe = href.startswith(_SAFE_SCHEMES)
            open_links.append(safe)
            if safe:
                out.append(f'<a href="{escape(href)}">')
        elif kind == "link_close":
            if open_links.pop():
                out.append("</a>")
        elif kind == "image":
            out.append(escape(token.content or "", quote=False))
        elif kind == "html_inline":
            out.append(escape(token.content, quote=False))
    return "".join(out)
