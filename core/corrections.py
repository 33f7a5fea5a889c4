"""Holding the model to its correction and new-word rules while its reply streams.

Small models invent errors: they "correct" words the learner never wrote, offer a fix identical to the
original, rewrite a whole sentence, or correct the tutor's own words (MultiGEC-2025: a prompted 8B model is
wrong more often than right, so precision must come from code). A line marked ✏️ (a correction) or 📘 (a new
word) is held back until complete, checked, and shown in one canonical format or not at all; every other line
streams through untouched, as the model writes it. What survives is also handed over as data (`Findings`),
to become the learner's cards.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

from .categories import OTHER, label, normalize
from .filtering import filtered
from .i18n import render
from .prompts import CORRECTION_MARK, WORD_MARK

MAX_CORRECTIONS = 3  # "at most three corrections a message": focused feedback beats correcting everything
MAX_WORDS = 2
MAX_WORD_TOKENS = 6  # a word or a phrase, not a sentence
_PENCIL = CORRECTION_MARK[0]  # models often drop the emoji variation selector
_BOOK = WORD_MARK[0]
_MARKS = frozenset((_PENCIL, _BOOK))
# What may come before a mark at the start of a line: indentation, a bullet, a number, emphasis, a heading.
_LEADERS = frozenset(" \t-*•·>#.)0123456789")
_QUOTES = "\"“”„«»‘’‚‹›'`"
_DOUBLE = '"“”„«»'
_SINGLE = "‘’‚‹›'`"
_ARROW = re.compile(r"\s*(?:-->|—>|->|=>|→|⇒|➔|➜|⟶|⟹)\s*")
_QUOTED_FIX = re.compile(rf"^[{_QUOTES}](?P<fix>.+?)[{_QUOTES}](?=\s*(?:[(\[—–:;,.*]|-\s|$))(?P<rest>.*)$")
_PLAIN_FIX = re.compile(r"^(?P<fix>.+?)(?P<rest>\s*(?:[(\[]|\s[—–-]\s|[—–]|:\s).*)?$")
_LEADING_CATEGORY = re.compile(r"^[—–:\-]?\s*[(\[](?P<category>[^)\]]{1,40})[)\]]\s*(?P<explanation>.*)$")
_TRAILING_CATEGORY = re.compile(r"\s*[(\[](?P<category>[^)\]]{1,40})[)\]]\s*\.?$")
_NAMED_CATEGORY = re.compile(r"^(?P<category>[^—–:()\[\]]{1,30}?)\s*[—–:]\s*(?P<explanation>.+)$")
_WORD_SEPARATOR = re.compile(r"\s*(?:—|–|\s-\s|:|=|→|->)\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n\s*")
_APOSTROPHES = str.maketrans("’‘ʼ", "'''")


@dataclass(frozen=True)
class Said:
    """A learner message a reply answers (in a group, one per student in the reply), oldest first."""

    author: str | None
    text: str
    name: str = ""  # how the reply addresses them, when it answers several


@dataclass(frozen=True)
class Correction:
    wrong: str  # the learner's exact words, as they wrote them
    fix: str
    category: str  # a key of categories(language)
    explanation: str  # one line, in the lesson's native language, as the model wrote it
    author: str | None  # whose message it quotes
    context: str  # that learner's whole message


@dataclass(frozen=True)
class NewWord:
    word: str  # in the target language, as the 📘 line wrote it (it occurs in the reply)
    translation: str
    example: str  # the sentence of the reply it occurs in


@dataclass
class Findings:
    corrections: list[Correction] = field(default_factory=list)
    words: list[NewWord] = field(default_factory=list)


def correction_line(correction: Correction, native: str) -> str:
    """The one format a kept correction is shown in: `✏️ "wrong" → "fix" (label) — explanation`, the label in
    the explanations' language. The tutor's stored replies bring it back to the model, and `parse_correction`
    reads it back."""
    category = render(label(correction.category), native)
    shown = f'{CORRECTION_MARK} "{correction.wrong}" → "{correction.fix}" ({category})'
    return f"{shown} — {correction.explanation}" if correction.explanation else shown


def word_line(word: NewWord) -> str:
    return f"{WORD_MARK} {word.word} — {word.translation}"


@dataclass(frozen=True)
class Parsed:
    """A correction line's parts, as the model wrote them (not yet checked), the category normalized."""

    wrong: str
    fix: str
    category: str
    explanation: str


def parse_correction(line: str, language: str) -> Parsed | None:
    """The parts of a ✏️ line, tolerant of the shapes models write; None without an arrow between two parts.

    The category is named in brackets, after the fix (the prompt's format) or after the explanation, or as
    "category: explanation"; the last two only when it is a known category, else they are explanation."""
    body = _after_mark(line)
    if body is None:
        return None
    arrow = _ARROW.search(body)
    if arrow is None:
        return None
    wrong = _quoted_or_plain(body[: arrow.start()])
    fix, rest = _fix_and_rest(body[arrow.end() :])
    if not wrong or not fix:
        return None
    category, explanation = _category_and_explanation(rest, language)
    return Parsed(wrong, fix, category, explanation)


def parse_word(line: str) -> tuple[str, str] | None:
    """The word and translation of a 📘 line; None when it has no separator or lacks either."""
    body = _after_mark(line)
    if body is None:
        return None
    separator = _WORD_SEPARATOR.search(body)
    if separator is None:
        return None
    word = _quoted_or_plain(body[: separator.start()])
    translation = _quoted_or_plain(body[separator.end() :])
    if not word or not translation or not any(ch.isalpha() for ch in word):
        return None
    return word, translation


def _after_mark(line: str) -> str | None:
    text = line.lstrip("".join(_LEADERS))
    if not text or text[0] not in _MARKS:
        return None
    return text[1:].lstrip("\ufe0f").strip()


def _unemphasized(text: str) -> str:
    return text.strip().strip("*_").strip()


def _quoted_or_plain(text: str) -> str:
    """What is between the quotes (the last quoted span when a label comes first), else the text itself."""
    text = _unemphasized(text)
    quoted = re.search(rf"[{_DOUBLE}](?P<inner>.+)[{_DOUBLE}]$", text)
    if quoted:
        return quoted["inner"].strip()
    if len(text) >= 2 and text[0] in _SINGLE and text[-1] in _SINGLE:
        return text[1:-1].strip()
    return text


def _fix_and_rest(text: str) -> tuple[str, str]:
    text = text.lstrip("*_ ")
    quoted = _QUOTED_FIX.match(text)
    if quoted:
        return quoted["fix"].strip(), _unemphasized(quoted["rest"])
    if text[:1] in _QUOTES:
        return "", ""  # a quote never closed: the line was cut off before its fix was whole
    plain = _PLAIN_FIX.match(text)
    if plain is None:
        return "", ""
    return _quoted_or_plain(plain["fix"]), _unemphasized(plain["rest"] or "")


def _category_and_explanation(rest: str, language: str) -> tuple[str, str]:
    leading = _LEADING_CATEGORY.match(rest)
    if leading:
        return normalize(leading["category"], language), _explanation(leading["explanation"])
    explanation = _explanation(rest)
    trailing = _TRAILING_CATEGORY.search(explanation)
    if trailing and _known(trailing["category"], language):
        return normalize(trailing["category"], language), explanation[: trailing.start()].strip()
    named = _NAMED_CATEGORY.match(explanation)
    if named and _known(named["category"], language):
        return normalize(named["category"], language), named["explanation"].strip()
    return OTHER, explanation


def _known(name: str, language: str) -> bool:
    return normalize(name, language) != OTHER or name.strip().casefold() == OTHER


def _explanation(text: str) -> str:
    return text.strip().lstrip("—–-:").strip()


# Folding: what "the same words" means when comparing a quote with a message.


def _folded(text: str) -> tuple[str, list[int]]:
    """`text` in lower case with each run of whitespace one space and plain apostrophes, and for each folded
    character the position in `text` it came from (to recover the learner's own spelling and case)."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            if chars and chars[-1] == " ":
                continue
            folded = " "
        else:
            folded = ch.casefold().translate(_APOSTROPHES)
        chars.extend(folded)
        origin.extend([i] * len(folded))
    return "".join(chars), origin


def _fold(text: str) -> str:
    """A quote as it is searched for: folded, without punctuation or spaces at its edges."""
    folded, _ = _folded(text)
    start, end = 0, len(folded)
    while start < end and _is_edge(folded[start]):
        start += 1
    while end > start and _is_edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _is_edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in "PS"


def _find(needle: str, haystack: str) -> re.Match[str] | None:
    """`needle` (folded) in `haystack` (folded) as whole words: "tiene" is not in "tienes"."""
    if not needle:
        return None
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack)


def _key(text: str) -> str:
    """What a correction changes, compared: case, spacing and punctuation other than apostrophes and hyphens
    do not count (the prompt says not to correct punctuation)."""
    folded, _ = _folded(unicodedata.normalize("NFC", text))
    kept = "".join(" " if unicodedata.category(ch)[0] == "P" and ch not in "'-" else ch for ch in folded)
    return " ".join(kept.split())


def is_local_edit(wrong: str, fix: str) -> bool:
    """A fix must be a small edit of the quoted words, not a rewritten sentence.

    Measured in words (a word-level Levenshtein distance with rapidfuzz over the token lists): learner errors
    are mostly one or two words wrong, missing or extra ("yo tiene" → "yo tengo": 1; "voy playa" → "voy a la
    playa": 2; a vocabulary swap "carpeta" → "alfombra": 1). Up to 2 edits are allowed for any quote, up to half
    its words for a longer one (a quote of 6 words may carry three separate errors); a rewrite of the same
    thought ("me gusta la comida" → "la comida me encanta mucho": 5) exceeds it. The fix may also not grow past
    twice the quote's length plus one long word (8 letters): no explanation smuggled in as a "fix".
    """
    before, after = _key(wrong).split(), _key(fix).split()
    allowed = max(2, len(before) // 2)
    return Levenshtein.distance(before, after) <= allowed and len(fix) <= 2 * len(wrong) + 8


def _prose(text: str) -> str:
    """A reply without its marked lines and segments: what the tutor itself wrote."""
    lines = []
    for line in text.split("\n"):
        cut = min((i for i, ch in enumerate(line) if ch in _MARKS), default=len(line))
        lines.append(line[:cut])
    return "\n".join(lines)


class _Checker:
    """The checks of one reply, with what it has kept so far."""

    def __init__(self, said: Sequence[Said], language: str, native: str, tutor_before: str, findings: Findings) -> None:
        self.said = [Said(s.author, unicodedata.normalize("NFC", s.text), s.name) for s in said]
        self.folded_said = [_folded(s.text) for s in self.said]
        self.language = language
        self.native = native
        self.tutor_before = _folded(unicodedata.normalize("NFC", _prose(tutor_before)))[0]
        self.findings = findings
        self.seen: set[tuple[str | None, str]] = set()  # the corrections kept: author and quote
        self.seen_words: set[str] = set()  # the words kept

    def correction(self, parsed: Parsed, prose: str = "") -> Correction | None:
        quote = _fold(unicodedata.normalize("NFC", parsed.wrong))
        if _find(quote, self.tutor_before):
            return None  # the tutor's own words (or the learner repeating them): not the learner's error
        addressed = self._addressed(prose)
        found = None
        for said, (folded, origin) in zip(self.said, self.folded_said, strict=True):
            match = _find(quote, folded)
            if match and (found is None or found[0] is not addressed):
                # The student the reply is speaking to has the words, or else the latest message that has them.
                found = said, said.text[origin[match.start()] : origin[match.end() - 1] + 1]
        if found is None:
            return None
        said, wrong = found
        if sum(author == said.author for author, _ in self.seen) >= MAX_CORRECTIONS:
            return None
        if _key(wrong) == _key(parsed.fix) or not is_local_edit(wrong, parsed.fix):
            return None
        if (said.author, _key(wrong)) in self.seen:
            return None
        self.seen.add((said.author, _key(wrong)))
        correction = Correction(wrong, parsed.fix, parsed.category, parsed.explanation, said.author, said.text)
        self.findings.corrections.append(correction)
        return correction

    def _addressed(self, prose: str) -> Said | None:
        """In a reply to several students, the one the latest paragraph naming a student speaks to."""
        named = [(s, _fold(s.name.split()[0])) for s in self.said if s.name.split()]
        if len(named) < 2:
            return None
        for line in reversed(prose.split("\n")):
            head = _fold(line)[:80]
            for said, name in named:
                if _find(name, head):
                    return said
        return None

    def word(self, word: str, translation: str, prose: str) -> NewWord | None:
        if len(self.seen_words) >= MAX_WORDS or len(word.split()) > MAX_WORD_TOKENS:
            return None
        folded = _fold(unicodedata.normalize("NFC", word))
        if folded in self.seen_words or not _find(folded, _folded(prose)[0]):
            return None
        if any(_find(folded, text) for text, _ in self.folded_said):
            return None  # the learner used it: not new to them
        example = next((s.strip() for s in _SENTENCE_END.split(prose) if _find(folded, _folded(s)[0])), "")
        self.seen_words.add(folded)
        new = NewWord(word, translation, example)
        self.findings.words.append(new)
        return new


class _Filter:
    """The stream's state, line by line: a line streams as soon as it cannot be marked; from a mark on, the rest
    of the line is held and judged when the line ends.

    Line breaks are emitted with the content that follows them, so a dropped line takes its line break along,
    and blank lines around it collapse to the longest run among them: no blank-line debris."""

    def __init__(self, checker: _Checker) -> None:
        self.checker = checker
        self.prose: list[str] = []  # the reply's own lines so far, for checking and quoting new words
        self.prefix = ""  # the start of the line while it holds only leaders: it may still become marked
        self.line = ""  # the current line's prose, once it flows
        self.tail = ""  # from the first mark on
        self.flowing = False
        self.started = False  # some content went out
        self.blanks = 0  # blank lines since the last content or dropped line
        self.most_blanks = 0  # the longest such run since the last content
        self.dropped = False  # a line was dropped since the last content

    def feed(self, chunk: str) -> str:
        out: list[str] = []
        for ch in chunk:
            if ch == "\n":
                out.append(self._end_line())
            elif self.tail:
                self.tail += ch
            elif ch in _MARKS:
                self.tail = ch
            elif self.flowing:
                self.line += ch
                out.append(ch)
            elif ch in _LEADERS or ch.isspace():
                self.prefix += ch
            else:
                self.flowing = True
                self.line = self.prefix + ch
                out.append(self._content(self._breaks() + self.line))
                self.prefix = ""
        return "".join(out)

    def close(self) -> str:
        """The end of the stream: the last line, or the line breaks after the last content."""
        if self.flowing or self.tail or self.prefix.strip():
            return self._end_line()
        if self.dropped:
            return ""
        return "\n" * ((1 if self.started else 0) + self.blanks)

    def _end_line(self) -> str:
        line, tail, prefix, flowing = self.line, self.tail, self.prefix, self.flowing
        self.line, self.tail, self.prefix, self.flowing = "", "", "", False
        if not flowing and not tail:
            if prefix.strip():  # a line of leaders only, like "---"
                self.prose.append(prefix)
                return self._content(self._breaks() + prefix)
            self.blanks += 1
            return ""
        kept, raw = self._judge(tail, prose_before=line) if tail else ([], "")
        if flowing:  # the marked part came mid-line: the line itself already went out
            self.prose.append(line + raw)
            return self._content(raw + "".join("\n" + k for k in kept))
        if kept:
            return self._content(self._breaks() + "\n".join(kept))
        self.most_blanks, self.blanks, self.dropped = max(self.most_blanks, self.blanks), 0, True
        return ""

    def _judge(self, tail: str, prose_before: str) -> tuple[list[str], str]:
        """The canonical lines kept from a marked tail, and what of it is plain text: mid-line, a mark not
        followed by a correction or word shape is decoration; at a line's start it is an unusable correction."""
        kept: list[str] = []
        raw = ""
        starts = [i for i, ch in enumerate(tail) if ch in _MARKS] + [len(tail)]
        prose = "\n".join([*self.prose, prose_before])
        for start, end in itertools.pairwise(starts):
            segment = tail[start:end]
            if segment[0] == _PENCIL and _ARROW.search(segment):
                parsed = parse_correction(segment, self.checker.language)
                correction = self.checker.correction(parsed, prose) if parsed else None
                if correction is not None:
                    kept.append(correction_line(correction, self.checker.native))
            elif segment[0] == _BOOK and _WORD_SEPARATOR.search(segment):
                pair = parse_word(segment)
                word = self.checker.word(*pair, prose) if pair else None
                if word is not None:
                    kept.append(word_line(word))
            elif prose_before:
                raw += segment
        return kept, raw

    def _breaks(self) -> str:
        """The line breaks owed before the next content: none before the first after a dropped line."""
        after_content = 1 + max(self.most_blanks, self.blanks)
        return "\n" * (after_content if self.started else 0 if self.dropped else self.blanks)

    def _content(self, text: str) -> str:
        self.started, self.blanks, self.most_blanks, self.dropped = True, 0, 0, False
        return text


def checked(
    chunks: AsyncGenerator[str, None],
    said: Sequence[Said],
    *,
    language: str,
    native: str,
    tutor_before: str = "",
    findings: Findings | None = None,
) -> AsyncGenerator[str, None]:
    """Stream `chunks`, holding back each ✏️ and 📘 line until it is whole and checked.

    A correction is kept when its quote is in one learner's message of `said` (it then belongs to that
    learner), its fix changes something and is a local edit, it is not a repeat, it does not quote the
    tutor's previous reply (`tutor_before`), and fewer than MAX_CORRECTIONS came before; a new word when it
    occurs in the reply's own text before it, the learner did not use it, and fewer than MAX_WORDS came
    before. A marked line in another shape is dropped: it cannot be checked against the learner's words nor
    become a card, and the learner should see one format. `language` is the lesson's target language (for
    the categories), `native` the language the category labels are shown in. What is kept is appended to
    `findings`, in order, as it goes out.
    """
    checker = _Checker(said, language, native, tutor_before, findings if findings is not None else Findings())
    return filtered(chunks, _Filter(checker))
