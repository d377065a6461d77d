"""Pass 1: YAML text -> plain values plus the position of any node and key.

The only YAML reader of maintd. It is built straight from the parser's events with an
explicit stack, not with ``yaml.compose``: libyaml's composer recurses once per nesting
level (a few tens of thousands of ``[`` crash the process), and an alias bomb or a
recursive alias must be refused before it is expanded, not after. ``${VAR}`` is expanded
in scalar values here (never in keys or comments). Positions: the read keeps those of list
items and top-level values; ``Source.at`` finds the others with positions.Locator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import ConfigIssue
from .positions import Locator, events, lookup
from .scalars import MERGE as _MERGE
from .scalars import expand
from .scalars import plain as _plain
from .scalars import resolve as _resolve
from .scalars import typed as _typed

MAX_NODES = 2_000_000  # guards alias bombs ("billion laughs")
MAX_ALIASED = 250_000  # values that aliases may add; sharing a label set across 10,000 tenants is ~30,000
MAX_DEPTH = 64  # a config nests ~6 levels; libyaml's own composer crashes on deep input

Path = tuple  # ("windows", 0, "start")


@dataclass
class Source:
    """One parsed file: plain data plus the position of every value and key.

    ``expanded`` holds the paths of values that came from ``${VAR}``: secrets, as far as
    any message is concerned. With a ``locate``, ``marks`` hold a few mappings and lists only
    and ``at`` asks it for the rest (positions.py).
    """

    file: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    expanded: set[Path] = field(default_factory=set)
    locate: Callable[[Path, bool], tuple[int, int]] | None = None

    def at(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``; falls back to the nearest ancestor that has one."""
        p = tuple(path)
        if not key and p in self.marks:  # every tenant's and window's line: no Locator
            return self.marks[p]
        return lookup(self.marks, self.key_marks, p, key) if self.locate is None else self.locate(p, key)

    def issue(self, path: Path, message: str, *, key: bool = False, severity: str = "error") -> ConfigIssue:
        line, col = self.at(path, key=key)
        return ConfigIssue(self.file, line, col, message, severity)


class Collector:
    """Every issue of one parse, deduplicated; all passes report here."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []
        self._unset: set[tuple[str, int, int]] = set()

    def add(self, issue: ConfigIssue) -> None:
        # A value whose ${VAR} is unset was read as "": what later passes say about that
        # empty value ("invalid webhook secret") only repeats the one real problem.
        if (issue.file, issue.line, issue.col) in self._unset and issue.severity == "error":
            return
        if issue not in self.issues:
            self.issues.append(issue)

    def add_unset(self, issue: ConfigIssue) -> None:
        """An unset environment variable; later errors at the same place are dropped."""
        if issue not in self.issues:
            self.issues.append(issue)
        self._unset.add((issue.file, issue.line, issue.col))

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "warning"]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_START = frozenset({yaml.MappingStartEvent, yaml.SequenceStartEvent})
_END = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})
_NODE = frozenset({yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent})


class _Abort(Exception):
    """Reading cannot go on (too deep, alias bomb, recursive alias): this one issue only."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


class _Frame:
    __slots__ = ("path", "out", "is_map", "key", "anchor", "first", "record")

    def __init__(self, path: Path, is_map: bool, anchor: str | None, first: int) -> None:
        self.path = path
        self.is_map = is_map
        self.out: Any = {} if is_map else []
        self.key: Any = _NO_KEY
        self.anchor = anchor
        self.first = first  # node count when it opened: its expanded size at the end
        self.record: list = []


@dataclass
class _Anchor:
    value: Any
    size: int  # values it expands to
    marks: list  # [(relative path, (line, col))]
    key_marks: list


_NO_KEY = object()  # a mapping waits for its next key
_SKIP = object()  # the next value belongs to a rejected key: read and drop it
_OPEN = object()  # an anchor whose node is still being read


class _Reader:
    """One walk over the parser's events; ``run`` leaves the document in ``root``."""

    def __init__(self, text: str, file: str, env: Mapping[str, str], *, full: bool = True) -> None:
        self.text, self.file, self.env, self.full = text, file, env, full
        self.src = Source(file=file, data=None)
        self.marks, self.key_marks = self.src.marks, self.src.key_marks
        self.closed: Path | None = None  # the last mapping or list that ended (for a Locator)
        self.pending: list[ConfigIssue] = []  # kept only if the YAML itself is valid
        self.unset: list[ConfigIssue] = []
        self.anchors: dict[str, Any] = {}
        self.recorders: list[list] = []  # [prefix length, marks, key marks] of the anchors being read
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.count = 0  # values read, aliases counted at their expanded size
        self.aliased = 0  # of which added by aliases
        self.docs = 0
        self.discard = 0  # nesting depth of a node being dropped

    def at(self, ev: Any) -> tuple[int, int]:
        return ev.start_mark.line + 1, ev.start_mark.column + 1

    def abort(self, ev: Any, message: str) -> _Abort:
        return _Abort(ConfigIssue(self.file, *self.at(ev), message))

    def deliver(self, value: Any) -> None:
        if not self.stack:
            self.root = value
            return
        parent = self.stack[-1]
        if parent.is_map:
            parent.out[parent.key] = value
            parent.key = _NO_KEY
        else:
            parent.out.append(value)

    def run(self, events: Iterator[Any], done: Callable[[], bool] | None = None) -> bool:
        """Read ``events``; with ``done``, stop once it says so. True: the events ran out."""
        # Every event of the file passes here (~2.2 million for 100,000 tenants). Plain keys
        # and values, and mappings and lists without anchor, while no anchor is recorded,
        # inline; the rest, and any doubt (a duplicate key, "<<", ${VAR}, an anchor), through
        # step. Only a full reader records where each plain key and value is (positions.py).
        stack, recorders, full, marks, key_marks = self.stack, self.recorders, self.full, self.marks, self.key_marks
        typed: dict[str, Any] = {}  # plain scalar -> its value: labels, zones and flags repeat
        scalar, mapping, sequence, no_key, skip = (
            yaml.ScalarEvent,
            yaml.MappingStartEvent,
            yaml.SequenceStartEvent,
            _NO_KEY,
            _SKIP,
        )
        inline = 0  # values read here, not yet added to self.count
        plain = not recorders and not self.discard  # only step changes either
        for ev in events:
            t, fast = type(ev), False
            if plain and stack:
                parent = stack[-1]
                key, out = parent.key, parent.out
                if t is scalar:
                    if ev.tag is None and not ev.style:
                        text = ev.value
                        if key is no_key and parent.is_map:
                            if (
                                text != "<<"
                                and text not in out
                                and (not full or parent.path + (text,) not in key_marks)
                            ):
                                if full:
                                    m = ev.start_mark
                                    key_marks[parent.path + (text,)] = (m.line + 1, m.column + 1)
                                parent.key = text
                                fast = True
                        elif key is not skip and ev.anchor is None and "$" not in text:
                            value = typed.get(text, typed)
                            if value is typed:
                                value = typed[text] = _plain(text)
                            if full:
                                m = ev.start_mark
                                marks[parent.path + ((key if parent.is_map else len(out)),)] = (
                                    m.line + 1,
                                    m.column + 1,
                                )
                            if parent.is_map:
                                out[key] = value
                                parent.key = no_key
                            else:
                                out.append(value)
                            inline += 1
                            fast = True
                elif t is mapping or t is sequence:
                    if ev.anchor is None and (not parent.is_map or (key is not no_key and key is not skip)):
                        if len(stack) < MAX_DEPTH:
                            path = parent.path + ((key if parent.is_map else len(out)),)
                            if full or not parent.is_map or len(path) < 3:  # items: each tenant's, window's line
                                m = ev.start_mark
                                marks[path] = (m.line + 1, m.column + 1)
                            inline += 1
                            stack.append(_Frame(path, t is mapping, None, self.count + inline))
                            fast = True
                elif t in _END and parent.anchor is None:
                    stack.pop()
                    self.closed = parent.path
                    self.deliver(out)
                    fast = True
            if not fast:
                self.count += inline
                inline = 0
                self.step(ev, t)
                plain = not recorders and not self.discard
            if done is not None and done():
                self.count += inline
                return False
        self.count += inline
        return True

    def step(self, ev: Any, t: type) -> None:
        """One event that ``run`` does not handle inline."""
        if self.discard:
            self.discard += 1 if t in _START else -1 if t in _END else 0
        elif t in _NODE:
            self.node(ev, t)
        elif t in _END:
            self.close()
        elif t is yaml.DocumentStartEvent:
            self.docs += 1
            if self.docs > 1:
                raise self.abort(
                    ev,
                    "invalid YAML: expected a single document, found a second one "
                    "(a --- line); put everything in one document",
                )

    def node(self, ev: Any, t: type) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is None:
            path: Path = ()
        elif parent.is_map:
            if parent.key is _SKIP:
                parent.key = _NO_KEY
                self.discard = 1 if t in _START else 0
                return
            if parent.key is _NO_KEY:  # this node is a key
                self.key(ev, t, parent)
                return
            path = parent.path + (parent.key,)
        else:
            path = parent.path + (len(parent.out),)
        mark = (ev.start_mark.line + 1, ev.start_mark.column + 1)
        self.count += 1
        if t is yaml.AliasEvent:
            self.alias(ev, path, mark)
            return
        if ev.anchor is not None and ev.anchor in self.anchors:
            raise self.abort(ev, f'invalid YAML: duplicate anchor "&{ev.anchor}"')
        if self.full or t is not yaml.ScalarEvent:
            self.marks[path] = mark
        for r in self.recorders:
            r[1].append((path[r[0] :], mark))
        if t is not yaml.ScalarEvent:
            self.open(ev, t, path, mark)
        else:  # plain ones without anchor or ${VAR} mostly take run's inline path
            self.scalar(ev, path, mark)

    def key(self, ev: Any, t: type, parent: _Frame) -> None:
        if t is not yaml.ScalarEvent:
            self.pending.append(
                ConfigIssue(self.file, *self.at(ev), "expected a plain key, got a mapping, list or alias as key")
            )
            parent.key = _SKIP
            self.discard = 1 if t in _START else 0
            return
        key = ev.value
        if key == "<<" and not ev.style and _resolve(ev) == _MERGE:
            self.pending.append(
                ConfigIssue(self.file, *self.at(ev), "merge keys (<<) are not supported; write the keys out")
            )
            parent.key = _SKIP
            return
        kp = parent.path + (key,)
        key_marks = self.key_marks
        if key in parent.out or kp in key_marks:
            first = (key_marks.get(kp, (0, 0)) if self.full else self.src.at(kp, key=True))[0]
            self.pending.append(ConfigIssue(self.file, *self.at(ev), f'duplicate key "{key}" (first at line {first})'))
            parent.key = _SKIP
            return
        mark = self.at(ev)
        if self.full:
            key_marks[kp] = mark
        for r in self.recorders:
            r[2].append((kp[r[0] :], mark))
        parent.key = key

    def alias(self, ev: Any, path: Path, mark: tuple[int, int]) -> None:
        a = self.anchors.get(ev.anchor)
        if a is None:
            raise self.abort(ev, f'invalid YAML: undefined alias "*{ev.anchor}"')
        if a is _OPEN:
            raise self.abort(
                ev,
                f'alias "*{ev.anchor}" refers to the node that contains it; '
                "expected a plain config without recursive aliases",
            )
        self.count += a.size - 1
        self.aliased += a.size
        if self.count > MAX_NODES or self.aliased > MAX_ALIASED:
            raise self.abort(
                ev,
                f"aliases expand to more than {min(MAX_NODES, MAX_ALIASED)} values at "
                f'"*{ev.anchor}" (an alias bomb?); expected a plain config',
            )
        marks, key_marks = self.marks, self.key_marks
        for rel, pos in a.marks:
            marks[path + rel] = pos
        for rel, pos in a.key_marks:
            key_marks[path + rel] = pos
        marks[path] = mark  # the value as a whole: where it is used
        for r in self.recorders:
            r[1].extend((path[r[0] :] + rel, pos) for rel, pos in a.marks)
            r[2].extend((path[r[0] :] + rel, pos) for rel, pos in a.key_marks)
        self.deliver(a.value)

    def scalar(self, ev: Any, path: Path, mark: tuple[int, int]) -> None:
        value = _typed(ev)
        if isinstance(value, str) and "$" in value:
            expanded = expand(value, self.env, lambda msg: self.unset.append(ConfigIssue(self.file, *mark, msg)))
            if expanded != value.replace("$$", "$"):
                self.src.expanded.add(path)
            value = expanded
        if ev.anchor is not None:
            self.anchors[ev.anchor] = _Anchor(value=value, size=1, marks=[((), mark)], key_marks=[])
        self.deliver(value)

    def open(self, ev: Any, t: type, path: Path, mark: tuple[int, int]) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise self.abort(ev, f"nested more than {MAX_DEPTH} levels deep; expected a plain config")
        frame = _Frame(path, t is yaml.MappingStartEvent, ev.anchor, self.count)
        if ev.anchor is not None:
            self.anchors[ev.anchor] = _OPEN
            frame.record = [len(path), [((), mark)], []]
            self.recorders.append(frame.record)
        self.stack.append(frame)

    def close(self) -> None:
        frame = self.stack.pop()
        self.closed = frame.path
        if frame.anchor is not None:
            self.recorders.pop()  # anchored frames close innermost first
            self.anchors[frame.anchor] = _Anchor(
                value=frame.out, size=self.count - frame.first + 1, marks=frame.record[1], key_marks=frame.record[2]
            )
        self.deliver(frame.out)


def read_yaml(text: str, file: str, env: Mapping[str, str], col: Collector) -> Source | None:
    """YAML text -> Source; syntax errors and unset variables go to ``col`` (None: unreadable)."""
    reader = _Reader(text, file, env, full=False)

    def start() -> tuple[_Reader, Iterator[Any]]:
        return _Reader(text, file, env), events(_Loader(text))

    reader.src.locate = Locator(start)
    try:
        reader.run(events(_Loader(text)))
    except yaml.MarkedYAMLError as exc:
        col.add(_syntax_issue(exc, text, file))
        return None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        message = f"invalid YAML: control character 0x{char:02x} is not allowed; expected printable text"
        col.add(ConfigIssue(file, line, column, message))
        return None
    except yaml.YAMLError as exc:
        col.add(ConfigIssue(file, 1, 1, f"invalid YAML: {exc}"))
        return None
    except _Abort as exc:
        col.add(exc.issue)
        return None
    if reader.docs == 0:
        col.add(ConfigIssue(file, 1, 1, "the file is empty; expected a mapping with version: 1"))
        return None
    for issue in reader.pending:
        col.add(issue)
    for issue in reader.unset:
        col.add_unset(issue)
    reader.src.data = reader.root
    return reader.src


def _syntax_issue(exc: yaml.MarkedYAMLError, text: str, file: str) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = exc.problem or exc.context or "invalid YAML"
    lines = text.split("\n", line)
    if mark and line <= len(lines) and lines[line - 1][column - 1 : column] == "\t":
        what = "a tab character; YAML is indented with spaces"
    return ConfigIssue(file, line, column, f"invalid YAML: {what}")
