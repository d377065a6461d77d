"""Where a value or key of a parsed file is: FILE:LINE:COL for messages, found on demand.

Remembering the position of every scalar and key costs more than reading the file: at
100,000 tenants that is ~1.9 million (path, (line, col)) entries, ~450 MB and a second or
two. Yet a message needs a position only for the few paths it names. So the first read
keeps the positions of mappings and lists alone (each tenant's and window's line is part
of the model), and a ``Locator`` finds any other position with a second read of the same
text: a full one, that stops as soon as the answer can no longer change and resumes from
there for the next question. A warning on the first tenant reads a few events; messages
about windows at the end of a large file read it once more, in all (never once per message).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

Path = tuple  # ("windows", 0, "start")
Table = dict[Path, tuple[int, int]]


def lookup(marks: Table, key_marks: Table, path: Path, key: bool) -> tuple[int, int]:
    """Position of ``path`` in complete tables; falls back to the nearest ancestor that has one."""
    table = key_marks if key else marks
    p = tuple(path)
    while p:
        if p in table:
            return table[p]
        if key and p in marks:
            return marks[p]
        p = p[:-1]
    return marks.get((), (1, 1))


def events(loader: Any) -> Iterator[Any]:
    """The parser's events, one C call each (``yaml.parse`` adds a generator and a check per event)."""
    return iter(loader.get_event, None)


class FullReader(Protocol):
    """What a ``Locator`` needs of source's reader in its recording-every-position mode."""

    marks: Table
    key_marks: Table
    closed: Path | None  # the path of the last mapping or list that ended
    stack: list[Any]  # the mappings and lists still open (each has a .path)

    def run(self, events: Iterator[Any], done: Callable[[], bool] | None = None) -> bool: ...


class Locator:
    """Positions of one text beyond those the first read kept; one resumable full read."""

    def __init__(self, start: Callable[[], tuple[FullReader, Iterator[Any]]]) -> None:
        self._start = start
        self._reader: FullReader | None = None
        self._events: Iterator[Any] = iter(())
        self._finished = False

    def __call__(self, path: Path, key: bool) -> tuple[int, int]:
        if self._reader is None:
            self._reader, self._events = self._start()
        r = self._reader
        path = tuple(path)
        table = r.key_marks if key else r.marks

        def settled() -> bool:
            # Found; or a mapping or list holding the path has ended, so nothing can be
            # added under it any more and the nearest ancestor is the answer.
            closed = r.closed
            return path in table or (closed is not None and path[: len(closed)] == closed)

        def passed() -> bool:
            # Asked after the read went past it: its nearest recorded ancestor has ended.
            for k in range(len(path), -1, -1):
                if path[:k] in r.marks:
                    return all(f.path != path[:k] for f in r.stack)
            return False

        if not self._finished and not settled() and not passed():
            self._finished = r.run(self._events, settled)
        return lookup(r.marks, r.key_marks, path, key)
