"""The environment of a process maintd starts: a tenant job, a hook, an end check.

Those are the provider's scripts, not clients of maintd's API, and whatever they print
may end up in a log or a tenant-facing message: they get none of maintd's credentials.
What is dropped (names compared case-insensitively):

- maintd's tokens: ``MAINTD_TOKEN``, ``MAINTD_GATE_TOKEN``, ``MAINTD_READ_TOKEN`` and
  every other ``MAINTD_*`` name holding ``TOKEN`` (``MAINTD_TOKEN_FILE`` too: a job has no
  business reading the token file);
- ``SMTP_PASSWORD`` and every name ending in ``_TOKEN``, ``_SECRET``, ``_PASSWORD`` or
  ``_PASSWD``: the usual way to hand a secret to a process. Which variables the ``${VAR}``
  of a secret field in windows.yaml named cannot be known from the name alone, so the
  caller that knows passes them as ``extra_secret_names``, or their values as
  ``secret_values`` (a variable holding one of those values is dropped whatever its name).

Everything else (PATH, HOME, LANG, MAINTD_URL, a job's own settings) is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SECRET_NAMES = frozenset({"MAINTD_TOKEN", "MAINTD_GATE_TOKEN", "MAINTD_READ_TOKEN", "SMTP_PASSWORD"})
SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD")
# A value this short is no credential (tokens are refused under 32 characters); dropping
# every variable that equals "1" or "yes" would break jobs for nothing.
MIN_SECRET_VALUE = 8


def is_secret_name(name: str) -> bool:
    """Whether a variable named ``name`` is taken for a credential by its name alone."""
    upper = name.upper()
    if upper in SECRET_NAMES:
        return True
    if upper.startswith("MAINTD_") and "TOKEN" in upper:
        return True
    return upper.endswith(SECRET_SUFFIXES)


def scrub_env(
    env: Mapping[str, str],
    extra_secret_names: Iterable[str] = (),
    *,
    secret_values: Iterable[str] = (),
) -> dict[str, str]:
    """A copy of ``env`` without maintd's secrets (see the module docstring for which)."""
    extra = {n.upper() for n in extra_secret_names}
    values = {v for v in secret_values if v and len(v) >= MIN_SECRET_VALUE}
    return {
        name: value
        for name, value in env.items()
        if not is_secret_name(name) and name.upper() not in extra and value not in values
    }
