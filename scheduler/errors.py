"""One error base for maintd; the CLI alone turns these into exit codes and stderr.

Nothing here imports anything else of ours (DESIGN.md layer rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class MaintdError(Exception):
    """Base of every error a user may see. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located at ``file:line:col`` (1-based)."""

    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.col}: {prefix}{self.message}"


class ConfigError(MaintdError):
    """A config that does not validate; carries *all* errors found, not only the first."""

    exit_code = 2

    def __init__(self, issues: list[ConfigIssue] | ConfigIssue) -> None:
        if isinstance(issues, ConfigIssue):
            issues = [issues]
        # In file order: the main file's problems first, each file top to bottom.
        files: list[str] = []
        for i in issues:
            if i.file not in files:
                files.append(i.file)
        issues = sorted(issues, key=lambda i: (files.index(i.file), i.line, i.col))
        self.issues = [i for i in issues if i.severity == "error"] or list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    @property
    def first(self) -> ConfigIssue:
        return self.issues[0]


class UsageError(MaintdError):
    """A bad flag or argument on the command line."""

    exit_code = 2


class UnreachableError(MaintdError):
    """The daemon could not be reached over its API."""

    exit_code = 3


class RefusedError(MaintdError):
    """The daemon answered with a 4xx: it refused the request."""

    exit_code = 1


class NotFoundError(MaintdError):
    """A window, tenant, lease or notice that does not exist."""

    exit_code = 1


class ConflictError(MaintdError):
    """A request that does not fit the current state (e.g. extending an inactive window)."""

    exit_code = 1


class StoreError(MaintdError):
    """The store could not be read or written (disk full, read-only, database down)."""

    exit_code = 1


@dataclass
class DeliveryError(Exception):
    """A notice could not be delivered. ``permanent`` says whether a retry can help."""

    message: str
    permanent: bool = False
    detail: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message
