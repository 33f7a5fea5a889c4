"""Model Markdown as Telegram HTML: the few tags Telegram knows, everything else escaped.

Rendering goes through a real Markdown parser, so half-written Markdown in the middle of a stream (an
unclosed `**`, an open code fence) comes out as literal text or a closed block, never as broken markup.

Links are the model's, so they cannot be trusted (`core.links` rewrites them before this; this is the second
line): only an http/https address is ever a link, and the link's text is then the address itself, shown after
the model's words for it. Anything else (`tg://user?id=…`, `javascript:`) is plain text, and an address that
Telegram would link by itself (`tg://…` in the text) is set as code, which Telegram never links.
"""

from __future__ import annotations

from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token

from core.links import code_foreign_addresses, is_web, same_address

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough")

_INLINE_TAGS = {"strong": "b", "em": "i", "s": "s"}


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
            words = (token.info or "").split()
            language = words[0] if words else ""
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
    links: list[tuple[int, str, list[str]]] = []  # open links: where their text starts in `out`, href, plain text
    for token in tokens:
        kind = token.type
        if kind == "text":
            out.append(_text(token.content))
            for _, _, plain in links:
                plain.append(token.content)
        elif kind == "code_inline":
            out.append(f"<code>{escape(token.content, quote=False)}</code>")
            for _, _, plain in links:
                plain.append(token.content)
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind.endswith("_open") and kind[:-5] in _INLINE_TAGS:
            out.append(f"<{_INLINE_TAGS[kind[:-5]]}>")
        elif kind.endswith("_close") and kind[:-6] in _INLINE_TAGS:
            out.append(f"</{_INLINE_TAGS[kind[:-6]]}>")
        elif kind == "link_open":
            links.append((len(out), str(token.attrGet("href") or ""), []))
        elif kind == "link_close" and links:
            start, href, plain = links.pop()
            if is_web(href):
                address = _address(href)
                label = "".join(out[start:])
                shown = "".join(plain).strip()
                out[start:] = [address] if not shown or same_address(shown, href) else [label, f" ({address})"]
        elif kind == "image":
            alt, src = token.content or "", str(token.attrGet("src") or "")
            text = _text(alt)
            if is_web(src):
                text = f"{text} ({_address(src)})" if alt.strip() else _address(src)
            out.append(text)
        elif kind == "html_inline":
            out.append(escape(token.content, quote=False))
    return "".join(out)


def _text(text: str) -> str:
    """Plain text, escaped, with any address Telegram would link by itself (`tg://…`) set as code."""
    return code_foreign_addresses(
        text, lambda address: f"<code>{escape(address, quote=False)}</code>", lambda rest: escape(rest, quote=False)
    )


def _address(url: str) -> str:
    """A web address as a link whose visible text is that very address."""
    return f'<a href="{escape(url)}">{escape(url, quote=False)}</a>'
