"""Retention: message text older than `POLYGLOTT_RETENTION_DAYS` is deleted, at start and then once a day.

One pass per process, whichever platforms it serves: `polyglott run` and `polyglott chat` start `expiring` once,
beside their adapters. What goes and what stays is `Store.expire`'s to say; the log says how much, never what.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .store import Expired, Store

log = logging.getLogger(__name__)

DAY = 86_400.0


async def expire(store: Store, days: int, now: float) -> Expired:
    """One pass: delete what was written more than `days` days before `now`."""
    expired = await store.expire(now - days * DAY)
    log.info(
        "retention: %d messages deleted, %d card sentences blanked",
        expired.messages,
        expired.contexts,
        extra={"deleted": expired.messages},
    )
    return expired


async def expiring(store: Store, days: int, *, every: float = DAY, clock: Callable[[], float] = time.time) -> None:
    """A pass now and then every `every` seconds, until cancelled (run it as a task). A failed pass is logged
    and tried again at the next one."""
    while True:
        try:
            await expire(store, days, clock())
        except Exception as error:
            log.warning("retention failed", extra={"error": type(error).__name__})
        await asyncio.sleep(every)
