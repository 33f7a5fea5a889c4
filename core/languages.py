"""The languages the tutor teaches and explains in, found by name, autonym, code or a near miss."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from .errors import UnknownLanguage


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1
    name: str  # English name
    autonym: str  # what speakers call it
    aliases: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name if self.autonym == self.name else f"{self.name} ({self.autonym})"


CATALOG: tuple[Language, ...] = (
    Language("es", "Spanish", "español", ("castellano", "espanol", "spa", "castilian")),
    Language("fr", "French", "français", ("francais", "fra", "fre")),
    Language("de", "German", "Deutsch", ("deu", "ger", "allemand")),
    Language("it", "Italian", "italiano", ("ita",)),
    Language("pt", "Portuguese", "português", ("portugues", "por", "brazilian", "brazilian portuguese")),
    Language("en", "English", "English", ("eng", "inglés", "ingles", "anglais", "englisch")),
    Language("nl", "Dutch", "Nederlands", ("nld", "dut", "flemish", "vlaams")),
    Language("sv", "Swedish", "svenska", ("swe",)),
    Language("no", "Norwegian", "norsk", ("nor", "bokmal", "bokmål", "nb")),
    Language("da", "Danish", "dansk", ("dan",)),
    Language("fi", "Finnish", "suomi", ("fin",)),
    Language("pl", "Polish", "polski", ("pol",)),
    Language("cs", "Czech", "čeština", ("ces", "cze", "cestina")),
    Language("ro", "Romanian", "română", ("ron", "rum", "romana")),
    Language("hu", "Hungarian", "magyar", ("hun",)),
    Language("el", "Greek", "ελληνικά", ("ell", "gre", "ellinika")),
    Language("ru", "Russian", "русский", ("rus", "russkiy")),
    Language("uk", "Ukrainian", "українська", ("ukr", "ukrainska")),
    Language("tr", "Turkish", "Türkçe", ("tur", "turkce")),
    Language("ar", "Arabic", "العربية", ("ara", "arabi")),
    Language("he", "Hebrew", "עברית", ("heb", "ivrit", "iw")),
    Language("fa", "Persian", "فارسی", ("fas", "per", "farsi")),
    Language("hi", "Hindi", "हिन्दी", ("hin",)),
    Language("bn", "Bengali", "বাংলা", ("ben", "bangla")),
    Language("zh", "Chinese", "中文", ("zho", "chi", "mandarin", "putonghua", "普通话", "汉语")),
    Language("ja", "Japanese", "日本語", ("jpn", "nihongo")),
    Language("ko", "Korean", "한국어", ("kor", "hangugeo")),
    Language("vi", "Vietnamese", "Tiếng Việt", ("vie", "tieng viet")),
    Language("th", "Thai", "ไทย", ("tha",)),
    Language("id", "Indonesian", "Bahasa Indonesia", ("ind", "bahasa")),
    Language("ms", "Malay", "Bahasa Melayu", ("msa", "may", "melayu")),
    Language("sw", "Swahili", "Kiswahili", ("swa",)),
    Language("ca", "Catalan", "català", ("cat", "catala")),
    Language("eo", "Esperanto", "Esperanto", ("epo",)),
)

# Popular first: what the adapters offer as buttons before a learner has typed anything.
POPULAR: tuple[str, ...] = ("es", "fr", "de", "it", "pt", "en", "ja", "zh")

_SURE = 80.0  # a fuzzy score at or above this, clearly ahead of the runner-up, is taken without asking
_CLOSE = 60.0  # below this a name is not worth suggesting


def _fold(text: str) -> str:
    """Case- and accent-insensitive key, so `Español`, `espanol` and `ESPAÑOL` meet."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().strip())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_BY_KEY: dict[str, Language] = {}
for _lang in CATALOG:
    for _key in (_lang.code, _lang.name, _lang.autonym, *_lang.aliases):
        _BY_KEY.setdefault(_fold(_key), _lang)
_KEYS = list(_BY_KEY)
_BY_CODE: dict[str, Language] = {lang.code: lang for lang in CATALOG}


def by_code(code: str) -> Language:
    """The catalog entry for a stored ISO code; `UnknownLanguage` for a code that is not (or no longer) in it."""
    found = _BY_CODE.get(code)
    if found is None:
        raise UnknownLanguage(code, ())
    return found


@dataclass(frozen=True)
class Match:
    language: Language
    exact: bool  # False when a typo was forgiven: adapters may say "taking X as Spanish"


def find_language(query: str) -> Match:
    """Resolve what a learner typed, or raise `UnknownLanguage` with the closest names."""
    key = _fold(query)
    if not key:
        raise UnknownLanguage(query, suggest(query))
    if key in _BY_KEY:
        return Match(_BY_KEY[key], exact=True)
    hits = _ranked(key)
    if hits:
        best_lang, best_score = hits[0]
        runner_up = hits[1][1] if len(hits) > 1 else 0.0
        if best_score >= _SURE and best_score - runner_up >= 10 and len(key) >= 3:
            return Match(best_lang, exact=False)
    raise UnknownLanguage(query, suggest(query, limit=3))


def suggest(prefix: str, limit: int = 25) -> tuple[Language, ...]:
    """Languages for an autocomplete box: prefix matches first, then near misses, popular ones when empty."""
    key = _fold(prefix)
    if not key:
        popular = tuple(by_code(code) for code in POPULAR)
        return (popular + tuple(lang for lang in CATALOG if lang not in popular))[:limit]
    starts = [lang for lang in CATALOG if any(_fold(n).startswith(key) for n in _names(lang))]
    near = [lang for lang, _ in _ranked(key) if lang not in starts]
    return tuple(starts + near)[:limit]


def _names(lang: Language) -> tuple[str, ...]:
    return (lang.code, lang.name, lang.autonym, *lang.aliases)


def _ranked(key: str) -> list[tuple[Language, float]]:
    """Best score per language, highest first, dropping the hopeless."""
    best: dict[Language, float] = {}
    for name, score, _ in process.extract(key, _KEYS, scorer=fuzz.ratio, limit=30, score_cutoff=_CLOSE):
        lang = _BY_KEY[name]
        best[lang] = max(best.get(lang, 0.0), score)
    return sorted(best.items(), key=lambda item: -item[1])
