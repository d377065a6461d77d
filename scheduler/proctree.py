"""A job's whole process tree on Linux: find it, signal it, kill it, reap it.

A job is more than its main process: a shell's background children stay in its process
group, a daemonised child leaves it (``setsid``) and outlives the main process. A
process group cannot name those, so the tree is read from ``/proc/*/stat`` (parent
links). A process whose parent dies is re-parented to the nearest *child subreaper*
(:func:`set_subreaper`) instead of init, so a job's orphans stay children of
``maintd exec``, where they can be found, waited for and reaped.

Elsewhere (no ``/proc``) everything degrades to the job's process group: ``descendants``
is empty, signals go to the group, and a child that left the group is not seen.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import NamedTuple

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
LINUX = sys.platform.startswith("linux") and os.path.isdir("/proc/self")


class Proc(NamedTuple):
    ppid: int
    state: str  # one letter of /proc/PID/stat: R, S, D, Z (zombie), X (dead), ...
    pgid: int
    start: int  # clock ticks after boot: with the pid, names one process (pids are reused)

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def _libc() -> ctypes.CDLL | None:
    # dlopen(NULL): the symbols already loaded, libc's among them (find_library may run ldconfig)
    for name in (None, "libc.so.6"):
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    return None


def set_subreaper(on: bool = True) -> bool | None:
    """Make this process a child subreaper (or stop being one); return the previous setting.

    ``None`` when the system has no subreapers (not Linux, no libc): orphans then go to
    init, and only descendants seen before they were orphaned can be followed.
    """
    libc = _libc() if LINUX else None
    if libc is None:
        return None
    before = ctypes.c_int(0)
    if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0) != 0:
        return None
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        return None
    return bool(before.value)


def read_stat(pid: int) -> Proc | None:
    """One process's parent, state and group; ``None`` once it is gone (and reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces and ')': split after the last one
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        state = fields[0].decode("ascii", "replace")
        return Proc(ppid=int(fields[1]), state=state, pgid=int(fields[2]), start=int(fields[19]))
    except (IndexError, ValueError):
        return None


def table() -> dict[int, Proc]:
    """Every process this one can see (empty where there is no ``/proc``)."""
    if not LINUX:
        return {}
    procs: dict[int, Proc] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = read_stat(int(name))
            if p is not None:
                procs[int(name)] = p
    return procs


def _children_map(procs: dict[int, Proc]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid, p in procs.items():
        kids.setdefault(p.ppid, []).append(pid)
    return kids


def _below(roots: Iterable[int], procs: dict[int, Proc]) -> set[int]:
    """``roots``' descendants (not the roots), living or zombie, by parent links."""
    kids = _children_map(procs)
    seen: set[int] = set()
    todo = [c for r in roots for c in kids.get(r, ())]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(kids.get(pid, ()))
    return seen


def descendants(pid: int, procs: dict[int, Proc] | None = None) -> set[int]:
    """The living descendants of ``pid`` (not ``pid`` itself), whatever their group or session."""
    procs = table() if procs is None else procs
    return {d for d in _below([pid], procs) if procs[d].alive}


def children(pid: int, procs: dict[int, Proc] | None = None) -> set[int]:
    """``pid``'s direct children, zombies included (they are still to be reaped)."""
    procs = table() if procs is None else procs
    return {c for c, p in procs.items() if p.ppid == pid}


def _send(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _send_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def signal_tree(root_pid: int, sig: int) -> set[int]:
    """Send ``sig`` to ``root_pid``'s group, itself and every descendant; return whom it reached.

    The group too: it catches a child forked between reading ``/proc`` and the signal.
    """
    _send_group(root_pid, sig)
    pids = {root_pid} | descendants(root_pid)
    _send(pids, sig)
    return pids


def reap(pids: Iterable[int] | None = None) -> dict[int, int]:
    """Collect the exit status of this process's dead children: ``pids`` only, or all of them.

    Returns pid -> code as :class:`subprocess.Popen` reports it (a signal as its negative
    number). Pass ``pids`` wherever other code also waits for children (a ``Popen`` that
    finds its child already reaped reports a wrong exit code).
    """
    todo = children(os.getpid()) if pids is None else set(pids)
    codes: dict[int, int] = {}
    for pid in todo:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if got:
            codes[got] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return codes


def kill_tree(root_pid: int, grace: float, *, poll: float = 0.05) -> set[int]:
    """SIGTERM ``root_pid`` and its descendants, SIGKILL whatever is left after ``grace`` seconds.

    Descendants orphaned on the way stay tracked (those seen once are followed by pid).
    Reaps the ones that are this process's children except ``root_pid`` (its ``Popen``
    does that). Returns the pids that needed SIGKILL.
    """
    tracked: dict[int, int] = {root_pid: 0}
    alive = _follow(tracked, table())
    _send_group(root_pid, signal.SIGTERM)
    _send(alive, signal.SIGTERM)
    end = time.monotonic() + grace
    while alive and time.monotonic() < end:
        time.sleep(poll)
        reap(set(tracked) - {root_pid})
        alive = _follow(tracked, table())
    killed = set(alive)
    while alive:
        _send_group(root_pid, signal.SIGKILL)
        _send(alive, signal.SIGKILL)
        time.sleep(poll)
        reap(set(tracked) - {root_pid})
        alive = _follow(tracked, table())
        killed |= alive
    return killed


def _follow(tracked: dict[int, int], procs: dict[int, Proc]) -> set[int]:
    """Update ``tracked`` (pid -> start, 0 for not seen yet) in place; return its living pids.

    Adds the descendants; drops the processes that are gone (reaped), so a pid the system
    hands to an unrelated process later is never taken for the job's.
    """
    for pid, start in list(tracked.items()):
        p = procs.get(pid)
        if p is None or (start and p.start != start):
            del tracked[pid]
        elif not start:
            tracked[pid] = p.start
    for pid in _below(tracked, procs):
        tracked.setdefault(pid, procs[pid].start)
    return {pid for pid in tracked if procs[pid].alive}


class JobTree:
    """The processes of one job started by ``maintd exec``: its main process and everything below.

    Members are the main process, its descendants, and this process's children that were
    not there before the job (``exclude``: in a test runner other children may be) with
    their descendants: with :func:`set_subreaper` on, a job's orphans are re-parented here.
    Every member seen stays tracked until it is gone, so an orphan that went to init (no
    subreaper) is still followed. Where there is no ``/proc`` only the group is known.
    A child this process starts in another thread while the job runs would count as the
    job's: ``maintd exec`` starts none. ``poll`` is how often the tree is read once the main
    process is gone (a read costs ~3 ms per 100 processes on the host).
    """

    def __init__(self, proc: subprocess.Popen, *, exclude: Iterable[int] = (), poll: float = 0.25) -> None:
        self.proc = proc
        self.exclude = frozenset(exclude)
        self.poll = poll
        self.me = os.getpid()
        self.tracked: dict[int, int] = {proc.pid: 0}  # pid -> start time (see _follow)
        self.killing = False  # past the deadline: whatever still runs gets SIGKILL
        self.lock = threading.Lock()  # guards ``tracked`` (the heartbeat thread signals too)

    def members(self) -> set[int]:
        """The job's processes still alive (the main process included while it runs)."""
        procs = table()
        adopted = {c for c in children(self.me, procs) if c not in self.exclude and c != self.proc.pid}
        with self.lock:
            for pid in adopted:
                self.tracked.setdefault(pid, procs[pid].start)
            return _follow(self.tracked, procs)

    def signal(self, sig: int) -> None:
        """``sig`` to the job's process group and to every member."""
        _send_group(self.proc.pid, sig)
        if LINUX:
            _send(self.members(), sig)

    def kill(self) -> None:
        """The deadline: SIGKILL now, and to anything of the job seen from now on."""
        self.killing = True
        self.signal(signal.SIGKILL)

    def reap(self) -> None:
        with self.lock:
            others = set(self.tracked) - {self.proc.pid}  # the main process is its Popen's to wait for
        reap(others)

    def wait(self) -> int:
        """Wait for the main process, then for every other member; return the main's code.

        Dead orphans are reaped on the way so they do not pile up as zombies in a long job.
        """
        while True:
            try:
                code = self.proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if LINUX:
                    self.members()  # learns the orphans adopted so far, so they can be reaped
                    self.reap()
        if not LINUX:
            return code  # only the group is known, and the main process was its leader
        while True:
            self.reap()
            left = self.members()
            if not left:
                return code
            if self.killing:
                _send(left, signal.SIGKILL)  # forked after the kill, or it went on
            time.sleep(self.poll)
