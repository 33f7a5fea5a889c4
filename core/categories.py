"""The kinds of error a correction can be: a fixed list for every language plus a few per target language.

A fixed list lets the tutor count a learner's recurring errors and show trends; the model names the category
in its correction line and code maps whatever it wrote (a synonym, a plural, a label in the learner's
language, a typo) onto a key, so a category the list does not know is "other" rather than a new one.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from rapidfuzz import fuzz, process

from .i18n import UI_LANGUAGES, Msg, _, render

OTHER = "other"
GENERAL: tuple[str, ...] = (
    "agreement",
    "verb tense",
    "verb form",
    "article",
    "preposition",
    "word order",
    "spelling",
    "accents",
    "vocabulary",
    OTHER,
)
# The classic trouble spots of each language, for learners of any background.
_EXTRA: dict[str, tuple[str, ...]] = {
    "es": ("ser/estar", "por/para", "subjunctive"),
    "pt": ("ser/estar", "por/para", "subjunctive", "contraction"),
    "fr": ("auxiliary", "subjunctive", "elision"),
    "de": ("case", "adjective endings", "separable verb"),
    "it": ("auxiliary", "subjunctive", "double consonants"),
}

# Each key's label, for showing it to a learner (the catalogs translate it).
_LABELS: dict[str, Msg] = {
    # NOTE: a category of learner error (subject-verb, noun-adjective agreement)
    "agreement": _("agreement"),
    # NOTE: a category of learner error
    "verb tense": _("verb tense"),
    # NOTE: a category of learner error (conjugation)
    "verb form": _("verb form"),
    # NOTE: a category of learner error (the grammar word)
    "article": _("article"),
    # NOTE: a category of learner error
    "preposition": _("preposition"),
    # NOTE: a category of learner error
    "word order": _("word order"),
    # NOTE: a category of learner error
    "spelling": _("spelling"),
    # NOTE: a category of learner error (written accents, diacritics)
    "accents": _("accents"),
    # NOTE: a category of learner error (the wrong word)
    "vocabulary": _("vocabulary"),
    # NOTE: a category of learner error: any other kind
    OTHER: _("other"),
    # NOTE: a category of learner error in Spanish or Portuguese: keep the two verbs as they are
    "ser/estar": _("ser/estar"),
    # NOTE: a category of learner error in Spanish or Portuguese: keep the two prepositions as they are
    "por/para": _("por/para"),
    # NOTE: a category of learner error (the verb mood)
    "subjunctive": _("subjunctive"),
    # NOTE: a category of learner error in Portuguese (de + o = do, em + a = na)
    "contraction": _("contraction"),
    # NOTE: a category of learner error in French or Italian: être/avoir, essere/avere in compound tenses
    "auxiliary": _("auxiliary verb"),
    # NOTE: a category of learner error in French (je ai → j'ai)
    "elision": _("elision"),
    # NOTE: a category of learner error in German (nominative, accusative, dative, genitive)
    "case": _("case"),
    # NOTE: a category of learner error in German (adjective declension)
    "adjective endings": _("adjective endings"),
    # NOTE: a category of learner error in German (anrufen: ich rufe an)
    "separable verb": _("separable verb"),
    # NOTE: a category of learner error in Italian (caro / carro)
    "double consonants": _("double consonants"),
}

# What models write instead of a key, in English; labels in the UI languages come from the catalogs.
_ALIASES: dict[str, tuple[str, ...]] = {
    "agreement": ("gender", "concord", "number agreement", "gender agreement"),
    "verb tense": ("tense", "past tense", "preterite imperfect"),
    "verb form": ("conjugation", "verb conjugation", "verb", "infinitive", "participle"),
    "article": ("determiner", "definite article", "indefinite article"),
    "word order": ("syntax", "order", "sentence structure"),
    "spelling": ("orthography", "typo", "capitalization", "capitalisation", "capital letter"),
    "accents": ("accent mark", "diacritic", "tilde", "accentuation"),
    "vocabulary": ("word choice", "lexical", "lexicon", "wrong word", "false friend", "lexis"),
    "ser/estar": ("ser estar", "ser vs estar", "ser or estar"),
    "por/para": ("por para", "por vs para", "por or para"),
    "subjunctive": ("mood", "subjunctive mood"),
    "auxiliary": ("auxiliary verb", "être/avoir", "essere/avere"),
    "case": ("declension", "noun case", "dative", "accusative", "genitive", "nominative"),
    "adjective endings": ("adjective ending", "adjective declension", "adjective inflection"),
    "separable verb": ("separable prefix", "trennbare verben"),
    "double consonants": ("double consonant", "doppie"),
}

# Words that say "error" around a category's name ("verb tense error", "error de concordancia").
_FILLER_WORDS = "error mistake wrong incorrect erreur fehler errore erro falta faute use usage uso emploi of de di the"
_FILLER = frozenset(_FILLER_WORDS.split())
# rapidfuzz's ratio on folded names. 85 forgives one or two letters in a word of eight or more ("speling",
# "preposicione", "subjuntivo" score 86–96) but not a different category ("verb tense"/"verb form" 53,
# "agreement"/"argument" 71, "case"/"casa" 75). Measured with fuzz.ratio on the folded forms.
_CUTOFF = 85.0


def categories(language: str) -> tuple[str, ...]:
    """The category keys for corrections in a target language (an ISO code such as "es" or "pt-BR")."""
    return GENERAL + _EXTRA.get(_primary(language), ())


def label(key: str) -> Msg:
    """A key's label, to render in the reader's language; a key no longer listed shows as "other"."""
    return _LABELS.get(key, _LABELS[OTHER])


def normalize(name: str, language: str) -> str:
    """The key of `categories(language)` that `name` (as a model wrote it) means; "other" when none does."""
    names = _names(language)
    folded = _fold(name)
    if not folded:
        return OTHER
    if folded in names:
        return names[folded]
    best = process.extractOne(folded, list(names), scorer=fuzz.ratio, score_cutoff=_CUTOFF)
    return names[best[0]] if best else OTHER


def _names(language: str) -> dict[str, str]:
    return _names_of(_primary(language))


@functools.cache
def _names_of(language: str) -> dict[str, str]:
    """Every folded name of every key of the language: the key, its aliases, its label in each UI language.

    Cached: building it reads each catalog (0.7 ms, measured), too much to repeat for each correction."""
    names: dict[str, str] = {}
    for key in categories(language):
        for name in (key, *_ALIASES.get(key, ()), *(render(label(key), ui) for ui in UI_LANGUAGES)):
            names.setdefault(_fold(name), key)
    names.pop("", None)
    return names


def _fold(name: str) -> str:
    """Lower case without accents, words only, each singular, without words that merely say "error"."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = [_singular(word) for word in re.findall(r"[^\W_]+", plain)]
    kept = [word for word in words if word not in _FILLER]
    return " ".join(kept or words)


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _primary(language: str) -> str:
    return language.replace("_", "-").split("-")[0].casefold()
