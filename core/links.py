"""Model Markdown with every link made honest: the address shows, and only web addresses can be clicked.

A reply is the model's text, and the model can be talked into anything: `[your homework](https://elsewhere)`
hides where a click goes, `[Ana](tg://user?id=1)` links a classmate, `tg://proxy?…` reconfigures a client.
`visible_links` rewrites the Markdown itself, so Telegram (through `bots.telegram_html`) and Discord (which gets
the Markdown as is, masked links included) show the same safe text:

- `[text](https://x)` → `text (https://x)`, or just the address when the text is the address;
- `![alt](https://x)` → `alt (https://x)`; `<https://x>` → `https://x`;
- a link to anything but http/https (`tg:`, `javascript:`, `mailto:`, `discord:`, relative) → its text only;
- an address of another scheme left in the text (`tg://user?id=1`) → inline code, which no platform links;
- a `](scheme:` that CommonMark does not read as a link but another parser might (Discord's is not CommonMark;
  a stream that has not closed its link yet) gets a space, `] (`, so it cannot become a masked link.

Links are found with markdown-it (CommonMark, as `bots.telegram_html` renders), and replaced in the source text
at the positions the parser read them from, so everything else (code spans and blocks above all) is kept
byte for byte. The function is pure and every prefix of a stream is rewritten on its own: an unfinished
`[text](htt` stays raw until it closes and is never a link in between.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import MD_TRIM_CHARS
from markdown_it.rules_block.state_block import StateBlock
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token
from mdurl import decode as decode_url

WEB_SCHEMES = ("http://", "https://")

# An address of any scheme but the web's (`tg://…`, `ton://…`, `ftp://…`), or Telegram's own `tg:`/`ton:` forms:
# Telegram links these in plain text by itself, so they are shown as code instead.
FOREIGN_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?:(?!https?://)[A-Za-z][A-Za-z0-9+.\-]{1,31}://|(?:tg|ton|tonsite):(?=[^\s]))"
    r"[^\s()\[\]<>`*\"']*",
    re.IGNORECASE,
)
# `](` followed by something with a scheme: a link to any parser that reads more generously than CommonMark.
_MASKED = re.compile(r"\]\((?=\s*<?[A-Za-z][A-Za-z0-9+.\-]*:)")
_TRAILING = ".,;:!?"

_SPANS = "links.spans"  # env key: id(inline token list) → spans found while parsing it


@dataclass
class _Span:
    kind: str  # "link", "image", "autolink", "code"
    start: int  # offsets into the inline content until `_to_source` maps them into the source
    end: int
    label_start: int = 0
    label_end: int = 0
    url: str = ""
    label: str = ""  # the label as plain text, to tell a link whose text is its address
    inner: list[_Span] = field(default_factory=list)


def visible_links(markdown: str) -> str:
    """`markdown` with no link that hides its address and none that opens anything but a web page."""
    return _rewrite(markdown)


def is_web(url: str) -> bool:
    """Whether a click on `url` opens a web page (and not a chat, a profile, a script or a mail client)."""
    return url.strip().lower().startswith(WEB_SCHEMES)


def code_foreign_addresses(text: str, code: Callable[[str], str], rest: Callable[[str], str] = str) -> str:
    """`text` with every non-web address (`tg://user?id=1`) passed through `code`, which makes it unclickable,
    and everything else through `rest` (an escape for the output format)."""
    out: list[str] = []
    at = 0
    for match in FOREIGN_ADDRESS.finditer(text):
        address = match[0].rstrip(_TRAILING)
        if not address or address.endswith(":"):
            continue
        out += [rest(text[at : match.start()]), code(address)]
        at = match.start() + len(address)
    out.append(rest(text[at:]))
    return "".join(out)


def same_address(label: str, url: str) -> bool:
    """Whether a link's text already is its address (`example.com` for `https://example.com/`)."""

    def bare(text: str) -> str:
        text = text.strip().lower()
        for scheme in WEB_SCHEMES:
            text = text.removeprefix(scheme)
        return text.removeprefix("www.").rstrip("/")

    return bool(label.strip()) and bare(label) in (bare(url), bare(decode_url(url)))


# --------------------------------------------------------------------------------------------------------


def _inline_code(text: str) -> str:
    """`text` as a Markdown code span (it holds no backtick: `FOREIGN_ADDRESS` stops at one)."""
    return f"`{text}`"


def _plain(text: str) -> str:
    """Text between links: foreign addresses become code, a `](scheme:` cannot open a masked link."""
    return code_foreign_addresses(_MASKED.sub("] (", text), _inline_code)


def _spans_of(state: StateInline) -> list[_Span]:
    found: dict[int, list[_Span]] = state.env.setdefault(_SPANS, {})
    return found.setdefault(id(state.tokens), [])


def _label_text(tokens: Sequence[Token]) -> str:
    return "".join(t.content for t in tokens if t.type in ("text", "code_inline", "text_special", "image"))


def _link(original: Any) -> Callable[[StateInline, bool], bool]:
    def rule(state: StateInline, silent: bool) -> bool:
        start, first = state.pos, len(state.tokens)
        if silent or state.src[start] != "[":
            return bool(original(state, silent))
        label_end = state.md.helpers.parseLinkLabel(state, start, True)
        if not original(state, silent):
            return False
        pushed = state.tokens[first:]
        opening = next(i for i, t in enumerate(pushed) if t.type == "link_open")
        _spans_of(state).append(
            _Span(
                "link",
                start,
                state.pos,
                start + 1,
                label_end,
                str(pushed[opening].attrGet("href") or ""),
                _label_text(pushed[opening + 1 : -1]),
            )
        )
        return True

    return rule


def _image(original: Any) -> Callable[[StateInline, bool], bool]:
    def rule(state: StateInline, silent: bool) -> bool:
        start, first = state.pos, len(state.tokens)
        if silent or not state.src.startswith("![", start):
            return bool(original(state, silent))
        label_end = state.md.helpers.parseLinkLabel(state, start + 1, False)
        if not original(state, silent):
            return False
        image = next(t for t in state.tokens[first:] if t.type == "image")
        spans = _spans_of(state)
        # The alt text was parsed on its own (a new inline state): its links are ours too, shifted into place.
        for inner in state.env[_SPANS].pop(id(image.children), []):
            spans.append(_shifted(inner, start + 2))
        spans.append(
            _Span("image", start, state.pos, start + 2, label_end, str(image.attrGet("src") or ""), image.content)
        )
        return True

    return rule


def _shifted(span: _Span, by: int) -> _Span:
    return _Span(
        span.kind,
        span.start + by,
        span.end + by,
        span.label_start + by,
        span.label_end + by,
        span.url,
        span.label,
        [_shifted(s, by) for s in span.inner],
    )


def _autolink(original: Any) -> Callable[[StateInline, bool], bool]:
    def rule(state: StateInline, silent: bool) -> bool:
        start, first = state.pos, len(state.tokens)
        if not original(state, silent):
            return False
        if silent:
            return True
        opening = next(t for t in state.tokens[first:] if t.type == "link_open")
        _spans_of(state).append(
            _Span("autolink", start, state.pos, start + 1, state.pos - 1, str(opening.attrGet("href") or ""))
        )
        return True

    return rule


def _backticks(original: Any) -> Callable[[StateInline, bool], bool]:
    def rule(state: StateInline, silent: bool) -> bool:
        start, first = state.pos, len(state.tokens)
        if not original(state, silent):
            return False
        if not silent and any(t.type == "code_inline" for t in state.tokens[first:]):
            _spans_of(state).append(_Span("code", start, state.pos))
        return True

    return rule


# Where each line of an inline token's content came from: (offset in the content, offset in the source, length).
_Piece = tuple[int, int, int]


def _lines(state: StateBlock, begin: int, end: int, indent: int) -> tuple[str, list[_Piece]]:
    """`StateBlock.getLines(begin, end, indent, False)`, also saying where each line's text is in the source."""
    parts: list[str] = []
    pieces: list[_Piece] = []
    at = 0
    for line in range(begin, end):
        line_indent, line_start = 0, state.bMarks[line]
        first = line_start
        last = state.eMarks[line] + 1 if line + 1 < end else state.eMarks[line]
        while first < last and line_indent < indent:
            char = state.src[first]
            if char in " \t":
                line_indent += 4 - (line_indent + state.bsCount[line]) % 4 if char == "\t" else 1
            elif first - line_start < state.tShift[line]:
                line_indent += 1
            else:
                break
            first += 1
        virtual = " " * (line_indent - indent) if line_indent > indent else ""
        text = virtual + state.src[first:last]
        pieces.append((at + len(virtual), first, last - first))
        parts.append(text)
        at += len(text)
    return "".join(parts), pieces


def _trimmed(content: str, pieces: list[_Piece]) -> tuple[str, list[_Piece]]:
    lead = len(content) - len(content.lstrip(MD_TRIM_CHARS))
    return content.strip(MD_TRIM_CHARS), [(at - lead, source, length) for at, source, length in pieces]


def _block(original: Any, kind: str) -> Callable[[StateBlock, int, int, bool], bool]:
    """Wrap a block rule that makes an inline token, to note where that token's text sits in the source."""

    def rule(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        first = len(state.tokens)
        indent = state.blkIndent
        if not original(state, start_line, end_line, silent):
            return False
        if silent:
            return True
        for token in state.tokens[first:]:
            if token.type != "inline" or token.map is None:
                continue
            if kind == "heading":  # an ATX heading
                # One line: the text after the `#`s, closing `#`s and spaces trimmed.
                line_start = state.bMarks[start_line] + state.tShift[start_line]
                after = line_start + len(state.src[line_start:].split(" ", 1)[0].split("\t", 1)[0])
                where = state.src.find(token.content, after, state.eMarks[start_line] + 1)
                pieces = [(0, where, len(token.content))] if where >= 0 else []
                content = token.content if where >= 0 else ""
            else:
                content, pieces = _trimmed(*_lines(state, token.map[0], token.map[1], indent))
            if content == token.content and (pieces or not content):
                token.meta["pieces"] = pieces
        return True

    return rule


def _parser() -> MarkdownIt:
    # `text_join` would swap each inline token's children for a new list, losing the key to its spans.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough").disable("text_join")
    # Every destination is read as a link, `javascript:` included (markdown-it refuses a few): each is rewritten.
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    for name, wrap in (("link", _link), ("image", _image), ("autolink", _autolink), ("backticks", _backticks)):
        _replace(md.inline.ruler, name, wrap)
    for name in ("paragraph", "heading", "lheading"):
        _replace(md.block.ruler, name, _block_wrapper(name))
    return md


def _block_wrapper(kind: str) -> Callable[[Any], Callable[[StateBlock, int, int, bool], bool]]:
    return lambda original: _block(original, kind)


def _replace(ruler: Any, name: str, wrap: Callable[[Any], Any]) -> None:
    """Wrap rule `name`, keeping the rules it may interrupt (`Ruler.at` would forget them)."""
    rule = ruler.__rules__[ruler.__find__(name)]
    ruler.at(name, wrap(rule.fn), {"alt": list(rule.alt)})


_md = _parser()


class _Mapping:
    """Offsets in one inline token's content → offsets in the source it was read from."""

    def __init__(self, pieces: list[_Piece]) -> None:
        self.pieces = pieces
        self.starts = [at for at, _, _ in pieces]

    def start(self, offset: int) -> int:
        """Where the character at `offset` is in the source."""
        index = max(0, bisect.bisect_right(self.starts, offset) - 1)
        at, source, _ = self.pieces[index]
        return source + max(0, offset - at)

    def end(self, offset: int) -> int:
        """Where a stretch of content ending (exclusive) at `offset` ends in the source."""
        return self.start(offset - 1) + 1 if offset > 0 else self.start(0)


def _nest(spans: list[_Span]) -> list[_Span]:
    """Spans inside another's label become that span's `inner`; the rest are returned in order."""
    top: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        parent = next((t for t in reversed(top) if t.start <= span.start and span.end <= t.end), None)
        if parent is None:
            top.append(span)
            continue
        while True:  # descend to the innermost span that holds it
            deeper = next((t for t in parent.inner if t.start <= span.start and span.end <= t.end), None)
            if deeper is None:
                break
            parent = deeper
        parent.inner.append(span)
    return top


def _to_source(span: _Span, mapping: _Mapping) -> _Span:
    return _Span(
        span.kind,
        mapping.start(span.start),
        mapping.end(span.end),
        mapping.start(span.label_start),
        mapping.end(span.label_end) if span.label_end > span.label_start else mapping.start(span.label_start),
        span.url,
        span.label,
        [_to_source(s, mapping) for s in span.inner],
    )


def _render(source: str, start: int, end: int, spans: list[_Span]) -> str:
    """`source[start:end]` with `spans` (inside it, in order) replaced by what they should show."""
    out: list[str] = []
    at = start
    for span in spans:
        out.append(_plain(source[at : span.start]))
        out.append(_shown(source, span))
        at = span.end
    out.append(_plain(source[at:end]))
    return "".join(out)


def _shown(source: str, span: _Span) -> str:
    if span.kind == "code":
        return source[span.start : span.end]
    if span.kind == "autolink":
        inner = source[span.label_start : span.label_end]
        return inner if is_web(span.url) else _plain(inner)
    label = _render(source, span.label_start, span.label_end, span.inner).strip()
    if not is_web(span.url):
        return label
    if not label or same_address(span.label, span.url):
        return span.url
    return f"{label} ({span.url})"


@lru_cache(maxsize=16)  # the relay renders the same growing text several times per update
def _rewrite(markdown: str) -> str:
    source = markdown.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    env: dict[str, Any] = {}
    tokens = _md.parse(source, env)
    line_starts = [0] + [i + 1 for i, char in enumerate(source) if char == "\n"]

    def line_range(lines: list[int]) -> tuple[int, int]:
        begin = line_starts[lines[0]] if lines[0] < len(line_starts) else len(source)
        end = line_starts[lines[1]] if lines[1] < len(line_starts) else len(source)
        return begin, end

    edits: list[tuple[int, int, str]] = []
    for token in tokens:
        if token.type == "inline" and token.map is not None:
            spans = env.get(_SPANS, {}).get(id(token.children), [])
            pieces = token.meta.get("pieces")
            if pieces:
                mapping = _Mapping(pieces)
                begin, end = mapping.start(0), mapping.end(len(token.content))
                top = [_to_source(s, mapping) for s in _nest(spans)]
                edits.append((begin, end, _render(source, begin, end, top)))
            elif pieces is None:  # not located (never seen so far): no parser may find a link in it at least
                begin, end = line_range(token.map)
                edits.append((begin, end, _plain(source[begin:end])))
        elif token.type in ("fence", "code_block") and token.map is not None and not _closed(token, source):
            # Discord has no indented code blocks, and an unclosed fence is no code block there either.
            begin, end = line_range(token.map)
            edits.append((begin, end, _MASKED.sub("] (", source[begin:end])))
    out: list[str] = []
    at = 0
    for begin, end, text in sorted(edits):
        if begin < at:
            continue
        out.append(source[at:begin])
        out.append(text)
        at = end
    out.append(source[at:])
    return "".join(out)


def _closed(token: Token, source: str) -> bool:
    """Whether a fence ends with its closing line (an indented code block never counts as closed)."""
    if token.type != "fence" or token.map is None or token.map[1] - token.map[0] < 2:
        return False
    lines = source.split("\n")
    if token.map[1] - 1 >= len(lines):
        return False
    last = lines[token.map[1] - 1].lstrip(" \t>")
    return last.rstrip().startswith(token.markup) and not last.strip(token.markup[0] + " \t")
