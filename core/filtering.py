"""A stream of text through a filter that holds some of it back until it knows what it is: the checks of the
correction lines, the markers, a scene's hidden lines."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Protocol


class Filter(Protocol):
    def feed(self, chunk: str) -> str:
        """What of the text so far may go out now."""
        ...

    def close(self) -> str:
        """What of the held text goes out at the end."""
        ...


async def filtered(chunks: AsyncGenerator[str, None], through: Filter) -> AsyncGenerator[str, None]:
    """`chunks` through the filter, as they come; closing it closes `chunks`."""
    async with aclosing(chunks):
        async for chunk in chunks:
            out = through.feed(chunk)
            if out:
                yield out
    rest = through.close()
    if rest:
        yield rest
