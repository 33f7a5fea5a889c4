"""Which language a learner wrote in: the target language, or their own (or English) instead.

py3langid (a maintained fork of langid.py; its model ships in the wheel, nothing is downloaded) scores 140
languages. For a learner of Spanish who writes "me gusta mucho" the question is not which of 140 languages
that is, only whether it is Spanish rather than English or their own: so we rank all of them, compare the
candidates alone, renormalised, and abstain when the text is too short or the candidates too close to call.

The model takes 0.6-0.8 s to load (measured: ~0.15 s to import, 0.5-0.65 s for `from_model_file`), so it is
loaded once, lazily, under a lock; `warm()` does it at start-up. A call then takes ~0.1 ms (measured: 2,000
calls each on 18-100 character messages, 0.08-0.13 ms), below the ~1 ms where work leaves the event loop;
`written_in_async` is there for the first call (which may load the model) and for batches.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections.abc import Sequence
from typing import Protocol

# Below these a guess is noise: "ok", "jaja sí" and "hola amigo" rank Estonian or Zulu first.
MIN_LETTERS = 8
MIN_WORDS = 2
# The winner's share of the candidates' probability mass needed to decide; below it the answer is None.
# Measured: sentences of 3+ words in es/en/de/fr/it/pt score 0.98-1.0 against their rivals, "hola amigo" 0.76.
SURE = 0.9

# Scripts written without spaces between words: one "word" there can be a whole sentence.
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
# What is not the learner's language even inside their message: links, mentions, custom emoji, commands.
_NOISE = re.compile(r"https?://\S+|www\.\S+|<[@#:!a-z][^>\s]*>|@\w+|:\w+:|^/\w+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")


class _Ranker(Protocol):
    labels: list[str]

    def rank(self, text: str) -> list[tuple[str, float]]: ...


_lock = threading.Lock()
_model: _Ranker | None = None


def _identifier() -> _Ranker:
    """The one shared model (thread-safe to use: `rank` reads it only; `set_languages` would mutate it)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier  # type: ignore[import-untyped]

                _model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _model


@functools.cache
def _labels() -> frozenset[str]:
    return frozenset(_identifier().labels)


def warm() -> None:
    """Load the model now, at start-up (off the event loop), rather than on a learner's first message."""
    _identifier()


def _enough(text: str) -> bool:
    """Whether `text` (links and mentions taken out) holds enough to identify: two words and eight letters."""
    words = _WORD.findall(text)
    letters = sum(len(word) for word in words)
    spaced = len(words) >= MIN_WORDS or bool(_UNSPACED.search(text))
    return letters >= MIN_LETTERS and spaced


def written_in(text: str, target: str, others: Sequence[str]) -> bool | None:
    """True if `text` is in `target` (ISO 639-1) rather than one of `others`; None when it cannot tell.

    None: too short, only emoji or digits, a target the model lacks, or candidates too close to call. `others`
    the model lacks are left out; when none is left, the rival is the likeliest other language of all.
    """
    target = target.casefold()
    words = _NOISE.sub(" ", text)
    if not _enough(words):
        return None
    model = _identifier()
    known = _labels()
    if target not in known:
        return None
    ranked = model.rank(words)
    rivals = ({code.casefold() for code in others} & known) - {target}
    if not rivals:
        rivals = {next(code for code, _ in ranked if code != target)}
    scores = {code: score for code, score in ranked if code == target or code in rivals}
    total = sum(scores.values())
    if total <= 0.0:
        return None
    best = max(scores, key=lambda code: scores[code])
    if scores[best] / total < SURE:
        return None
    return best == target


async def written_in_async(text: str, target: str, others: Sequence[str]) -> bool | None:
    """`written_in` in a worker thread: the first call may load the model (0.6-0.8 s)."""
    return await asyncio.to_thread(written_in, text, target, others)
