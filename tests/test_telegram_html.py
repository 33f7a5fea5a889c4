"""Markdown → Telegram HTML, checked with the fake Bot API's parser, which is as strict as Telegram's.

A reply is rendered again at every update while it streams, so every prefix of a text must render to
HTML Telegram accepts, not just the finished text.
"""

from __future__ import annotations

import pytest

from bots.telegram_html import to_html
from tests.fake_telegram import parse_html

TRICKY = {
    "inline": "**Hola** _amigo_, ¿qué `tal`? ~~mal~~ bien. Un **doble _anidado_** y *uno* sin cerrar: **ojo",
    "hostile": "<b>x</i> & <script>alert('hi')</script> &amp; &#0; &lt; a<b && c>d ** __ ` [",
    "blocks": "# Título\n\n- uno **dos\n- tres\n  - cuatro\n\n3. c\n4. d\n\n> cita *con* énfasis\n\n---\n\nfin",
    "code": "Mira:\n\n```python\nif a < b and c > d:\n    print('<hola> & adiós')\n```\n\n`x<y` y ``z`` ok",
    "links": "[sitio](https://example.com/?a=1&b=2) [malo](javascript:alert(1)) ![foto](http://x/y.png) <https://a.b>",
    "hostile links": "[Ana](tg://user?id=1) [aquí](https://elsewhere.example) tg://resolve?domain=x <tg://user?id=2>",
    "corrections": '✏️ "yo es" → "yo soy" — *soy* is the first person.\n\n✏️ "la problema" → "el problema" — 😊',
}


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_every_prefix_renders_to_html_telegram_accepts(text: str) -> None:
    for end in range(len(text) + 1):
        parse_html(to_html(text[:end]))  # raises EntityParseError where Telegram would answer 400


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_the_visible_text_is_never_longer_than_the_markdown(text: str) -> None:
    """The relay splits at 4096 characters of Markdown; the rendered message must fit as well."""
    for end in range(len(text) + 1):
        visible, _ = parse_html(to_html(text[:end]))
        assert len(visible) <= len(text[:end])


def test_model_markup_is_shown_as_text_not_interpreted() -> None:
    visible, entities = parse_html(to_html("<b>x</i> & <script>"))
    assert (visible, entities) == ("<b>x</i> & <script>", [])


def test_an_unclosed_emphasis_stays_literal_until_it_closes() -> None:
    assert parse_html(to_html("muy **bien"))[0] == "muy **bien"
    assert parse_html(to_html("muy **bien**")) == ("muy bien", [{"type": "bold", "offset": 4, "length": 4}])


def test_only_safe_links_become_links() -> None:
    _, entities = parse_html(to_html("[a](https://example.com) [b](javascript:alert(1))"))
    assert [e.get("url") for e in entities] == ["https://example.com"]


def test_a_link_shows_its_real_address_and_only_the_address_is_clickable() -> None:
    visible, entities = parse_html(to_html("Tu [tarea](https://elsewhere.example/x)."))
    assert visible == "Tu tarea (https://elsewhere.example/x)."
    assert entities == [{"type": "text_link", "offset": 10, "length": 27, "url": "https://elsewhere.example/x"}]


def test_a_link_whose_text_is_its_address_is_shown_once() -> None:
    assert parse_html(to_html("[example.com](https://example.com)"))[0] == "https://example.com"


@pytest.mark.parametrize(
    "scheme", ["tg://user?id=1", "tg://resolve?domain=x", "mailto:a@b.example", "discord://-/users/1", "/relative"]
)
def test_a_link_to_anything_but_a_web_page_is_plain_text(scheme: str) -> None:
    assert parse_html(to_html(f"Hola [Ana]({scheme})")) == ("Hola Ana", [])


def test_a_non_web_address_in_the_text_is_code_never_a_link_or_mention() -> None:
    visible, entities = parse_html(to_html("Escribe a tg://user?id=1 y a \\<tg://user?id=2>."))
    assert "tg://user?id=1" in visible
    assert {e["type"] for e in entities} == {"code"}


def test_an_image_shows_its_alt_text_and_address() -> None:
    assert parse_html(to_html("![foto](https://img.example/p.png)"))[0] == "foto (https://img.example/p.png)"


def test_a_code_block_keeps_its_language() -> None:
    _, entities = parse_html(to_html("```python\nprint(1)\n```"))
    assert entities == [{"type": "pre", "offset": 0, "length": 8, "language": "python"}]


def test_list_numbers_are_kept_as_written() -> None:
    assert parse_html(to_html("0. cero\n1. uno"))[0] == "0. cero\n1. uno"
    assert parse_html(to_html("3) tres\n4) cuatro"))[0] == "3) tres\n4) cuatro"


def test_a_lazily_numbered_list_is_not_longer_than_its_source() -> None:
    lazy = "\n".join(["1. sí"] * 12)  # renumbered, items 10 to 12 would each gain a digit
    assert len(parse_html(to_html(lazy))[0]) <= len(lazy)


def test_a_code_block_whose_language_is_only_a_blank_has_none() -> None:
    visible, entities = parse_html(to_html("```\u00a0\nprint(1)\n```"))
    assert visible == "print(1)" and "pre" in {e["type"] for e in entities}
    assert all("language" not in e for e in entities)
