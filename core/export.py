"""Everything kept about one learner, as JSON, for a data request (`polyglott export --learner telegram:user:123`).

The sections are the database's tables, each row with its columns as stored (times as ISO 8601, UTC):
`profile` (their row of `learners`: name, language, reminder chat…), `messages` (what they wrote, the tutor's
answers to it and, in their private chats, the whole conversation), `cards`, `reviews`, `mistakes`,
`practice`, `flags`, `reviewing`, and their private chats' `lessons` and `levels`. A table added later appears
under its own name, read by `Store.learner_rows`.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

from .store import Store

FORMAT = 1  # the shape of the file, for whoever reads it later
SECTIONS = ("messages", "cards", "reviews", "mistakes", "practice", "flags", "reviewing", "lessons", "levels")
TIMES = frozenset(  # the columns holding a Unix time
    {
        *("at", "created_at", "updated_at", "first_seen", "last_seen"),
        *("due", "last_review", "reminded_at", "session", "shown_at"),
    }
)
_SHORT_ID = re.compile(r"(?P<platform>telegram|discord):(?P<number>\d+)")


class UnknownLearner(Exception):
    def __init__(self, learner: str) -> None:
        super().__init__(
            f"No learner {learner} in this database. Learner ids look like telegram:user:123, discord:user:456 "
            "or terminal:<user name>; a Telegram private chat's id (channel=telegram:123 in the log) is its user's."
        )


def candidates(given: str) -> list[str]:
    """The learner ids an operator may mean: as given, and `telegram:123` as `telegram:user:123` (a Telegram
    private chat's id is its user's id, and log lines name chats)."""
    found = [given]
    short = _SHORT_ID.fullmatch(given)
    if short:
        found.append(f"{short['platform']}:user:{short['number']}")
    return found


async def export_learner(store: Store, given: str, now: float | None = None) -> dict[str, object]:
    """The learner's data; `UnknownLearner` if nothing is kept about anyone by that id."""
    for learner in candidates(given):
        rows = await store.learner_rows(learner)
        if any(rows.values()):
            break
    else:
        raise UnknownLearner(given)
    profile = rows.pop("learners")
    data: dict[str, object] = {
        "format": FORMAT,
        "learner": learner,
        "exported_at": _utc(time.time() if now is None else now),
        "profile": _readable(profile[0]) if profile else None,
    }
    for table in (*SECTIONS, *sorted(set(rows) - set(SECTIONS))):
        data[table] = [_readable(row) for row in rows.get(table, [])]
    return data


def dumps(data: dict[str, object]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _readable(row: dict[str, object]) -> dict[str, object]:
    return {
        column: _utc(value) if column in TIMES and isinstance(value, int | float) else value
        for column, value in row.items()
    }


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
