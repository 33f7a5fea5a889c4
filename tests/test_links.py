"""The model's links rewritten so the chat shows where each goes, and only web pages can be clicked.

A reply is rewritten again at every update while it streams, so the checks that matter hold for every
prefix of a text, not only for the finished one.
"""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from bots.telegram_html import to_html
from core.links import visible_links
from tests.fake_telegram import parse_html

_commonmark = MarkdownIt("commonmark", {"html": False}).enable("strikethrough")
# What Discord (or any generous parser) would take for a masked link: `[text](scheme:…`.
MASKED = re.compile(r"\[[^\]]*\]\(\s*<?[A-Za-z][A-Za-z0-9+.\-]*:")
# What Telegram links in plain text by itself besides web addresses: `tg://…`, `tg:resolve…`, any `scheme://…`.
LINKABLE = re.compile(r"(?i)(?<![a-z0-9+.\-])(?:(?:tg|ton):[^\s`]|(?!https?://)[a-z][a-z0-9+.\-]+://)")
CODE = re.compile(r"```.*?(?:```|\Z)|`[^`]*`", re.DOTALL)

HOSTILE = {
    "disguised": "Tu tarea está [aquí](https://elsewhere.example/login). ¡Ánimo!",
    "classmate": "Pregúntale a [Ana](tg://user?id=777) o a [tu profe](tg://resolve?domain=profe).",
    "schemes": "[a](javascript:alert(1)) [b](mailto:x@y.example) [c](discord://-/users/1) [d](/rel) [e](//h.example)",
    "autolinks": "<https://a.example/x> <tg://user?id=1> <x@y.example>",
    "images": "![foto](https://img.example/p.png) ![](https://img.example/q.png) ![t](tg://user?id=1)",
    "nested": "[![logo](https://img.example/l.png)](https://elsewhere.example) ![a [b](https://e.example)](https://i.example/i.png)",
    "bare": "Escribe a tg://user?id=1 o usa tg:resolve?domain=x, no ton://y.",
    "containers": "> [una\n> cita](https://q.example)\n\n- [uno](https://1.example)\n  - [dos](tg://user?id=2)\n\n# [T](https://t.example)",
    "reference": "[aquí][r] y [r]\n\n[r]: https://ref.example",
    "generous": "[a]]](https://e.example) x\\[b](https://f.example)",
}


def links_in(markdown: str) -> list[str]:
    """The addresses CommonMark would make clickable in `markdown`."""
    found: list[str] = []
    for block in _commonmark.parse(markdown):
        for token in block.children or []:
            if token.type == "link_open":
                found.append(str(token.attrGet("href")))
            elif token.type == "image":
                found.append(str(token.attrGet("src")))
    return found


def outside_code(markdown: str) -> str:
    return CODE.sub("", markdown)


def test_a_link_shows_its_text_and_its_real_address() -> None:
    assert visible_links("[aquí](https://elsewhere.example/x)") == "aquí (https://elsewhere.example/x)"


def test_a_link_whose_text_is_its_address_shows_the_address_once() -> None:
    assert visible_links("[https://a.example](https://a.example)") == "https://a.example"
    assert visible_links("[a.example](https://a.example/)") == "https://a.example/"


def test_a_link_without_text_shows_its_address() -> None:
    assert visible_links("[](https://a.example)") == "https://a.example"


@pytest.mark.parametrize(
    "link",
    [
        "[Ana](tg://user?id=1)",
        "[Ana](javascript:alert(1))",
        "[Ana](mailto:ana@example.com)",
        "[Ana](discord://-/users/1)",
        "[Ana](/users/1)",
        "[Ana](//elsewhere.example)",
    ],
)
def test_a_link_to_anything_but_a_web_page_is_its_text_only(link: str) -> None:
    assert visible_links(f"Hola {link}.") == "Hola Ana."


def test_an_autolink_becomes_the_bare_address() -> None:
    assert visible_links("Mira <https://a.example/x>.") == "Mira https://a.example/x."


def test_a_non_web_address_left_in_the_text_is_shown_as_code() -> None:
    assert visible_links("<tg://user?id=1> y tg://user?id=2.") == "`tg://user?id=1` y `tg://user?id=2`."


def test_an_image_shows_its_alt_text_and_address() -> None:
    assert visible_links("![foto](https://img.example/p.png)") == "foto (https://img.example/p.png)"
    assert visible_links("![foto](tg://user?id=1)") == "foto"


def test_a_link_inside_formatting_keeps_the_formatting() -> None:
    assert visible_links("**[mira](https://a.example)**") == "**mira (https://a.example)**"


def test_a_link_in_a_quote_keeps_the_quote() -> None:
    assert visible_links("> [una\n> cita](https://q.example) y más") == "> una\n> cita (https://q.example) y más"


def test_a_reference_link_shows_its_address() -> None:
    assert visible_links("[aquí][r]\n\n[r]: https://ref.example").startswith("aquí (https://ref.example)")


def test_code_spans_and_code_blocks_are_untouched() -> None:
    text = "Usa `[a](https://x.example)`:\n\n```md\n[b](tg://user?id=1) <https://y.example>\n```\n"
    assert visible_links(text) == text


def test_everything_else_is_kept_byte_for_byte() -> None:
    text = "# Título\n\n**Hola** _amigo_, ¿qué tal? ~~mal~~\n\n1. uno\n2. dos\n\n> cita\n\n---\n\nfin  \n"
    assert visible_links(text) == text


def test_an_unfinished_link_stays_raw_and_never_clickable() -> None:
    assert visible_links("Mira [aquí](htt") == "Mira [aquí](htt"
    assert not MASKED.search(visible_links("Mira [aquí](https://elsewhere.example"))


def test_a_bracket_pair_other_parsers_would_link_cannot_become_a_masked_link() -> None:
    assert not MASKED.search(visible_links("[a]]](https://e.example)"))


def test_an_indented_block_discord_would_render_has_no_masked_link() -> None:
    assert not MASKED.search(visible_links("Código:\n\n    [clic](https://e.example)\n"))


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_no_prefix_of_a_stream_has_a_link_that_hides_its_address(text: str) -> None:
    for end in range(len(text) + 1):
        shown = visible_links(text[:end])
        assert links_in(shown) == [], shown
        assert not MASKED.search(outside_code(shown)), shown


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_no_prefix_of_a_stream_leaves_a_linkable_non_web_address_outside_code(text: str) -> None:
    for end in range(len(text) + 1):
        shown = outside_code(visible_links(text[:end]))
        assert not LINKABLE.search(shown), shown


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_every_rewritten_prefix_renders_for_telegram_without_a_hidden_link(text: str) -> None:
    for end in range(len(text) + 1):
        _, entities = parse_html(to_html(visible_links(text[:end])))
        assert [e for e in entities if e["type"] in ("text_link", "text_mention")] == []


def test_a_heading_still_ends_a_paragraph_as_in_commonmark() -> None:
    """The rewrite parses as the renderers do: here the first line is a paragraph and `[r]` a reference."""
    assert visible_links("[r] texto\n# Título\n[r]: https://ref.example") == (
        "r (https://ref.example) texto\n# Título\n[r]: https://ref.example"
    )
