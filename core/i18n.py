"""Every word the bot says, in the reader's language: gettext catalogs, managed with Babel.

Messages are written in English in the code as `_("Level set to {level}.", level=…)`, which makes a `Msg`:
a message not yet in any language. Whoever knows the reader renders it (`render(msg, "de")`). The catalogs
are `core/locales/<lang>/LC_MESSAGES/polyglott.po`, compiled by Babel when first needed, so a `.po` edit
needs no build step and no binary `.mo` goes stale in the repository. `pybabel extract` finds the messages
(see README, "Translations"); a test fails when a catalog misses one.
"""

from __future__ import annotations

import functools
import gettext
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).with_name("locales")
DOMAIN = "polyglott"
# The languages the interface is translated into; any other reader gets English.
UI_LANGUAGES: tuple[str, ...] = ("en", "es", "de", "fr", "pt", "it")


@dataclass(frozen=True)
class Msg:
    """A user-facing message before it has a language. `str(msg)` is the English text."""

    id: str
    args: tuple[tuple[str, object], ...] = ()
    plural: str | None = None
    n: int = 1

    def __str__(self) -> str:
        return render(self, "en")


def _(message: str, /, **args: object) -> Msg:
    """Mark `message` for the catalogs; `{name}` placeholders are filled from `args` once rendered."""
    return Msg(message, tuple(args.items()))


def _n(singular: str, plural: str, n: int, /, **args: object) -> Msg:
    """A message with a plural form chosen by `n` (also available as `{n}`)."""
    return Msg(singular, tuple(args.items()), plural, n)


def ui_language(code: str | None) -> str:
    """The interface language for a platform's language tag (`pt-BR`, `de`, `en_US`): English if untranslated."""
    primary = (code or "").replace("_", "-").split("-")[0].casefold()
    return primary if primary in UI_LANGUAGES else "en"


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog of one UI language (English is the source: no catalog)."""
    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == "en" or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def render(message: Msg | str, language: str | None) -> str:
    """`message` in `language` (a UI language or any tag `ui_language` accepts); plain strings pass through."""
    if isinstance(message, str):
        return message
    ui = ui_language(language)
    catalog = translations(ui)
    text = catalog.ngettext(message.id, message.plural, message.n) if message.plural else catalog.gettext(message.id)
    if not message.args and message.plural is None:
        return text
    values = {name: render(value, ui) if isinstance(value, Msg) else value for name, value in message.args}
    return text.format(n=message.n, **values)


def language_name(code: str, language: str | None) -> str:
    """A language's name as readers of `language` call it ("Spanisch" for German readers), from Babel's CLDR data."""
    try:
        name = Locale.parse(ui_language(language)).languages.get(code)
    except (UnknownLocaleError, ValueError):
        name = None
    return name or code


class Voice:
    """Messages rendered for one reader: `say = Voice("de"); say(_("Hello"))`."""

    def __init__(self, language: str | None) -> None:
        self.language = ui_language(language)

    def __call__(self, message: Msg | str) -> str:
        return render(message, self.language)

    def name(self, code: str) -> str:
        return language_name(code, self.language)
