"""One generation of configuration: the config and everything derived from it (notifiers,
renderer, compiled policies), built once per (re)load and swapped in as one object, so a
reader never sees the config of one load with the notifiers of another.

Reloads are serialised: two quick SIGHUPs end on the file on disk, never on a slower
first load finishing after the second.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import ConfigError, ConfigIssue
from ..model import Config
from ..policy import compile_policies

log = logging.getLogger("maintd")


@dataclass(frozen=True, kw_only=True)
class Generation:
    config: Config
    renderer: Any
    notifiers: dict[str, Any]  # channel -> Notifier
    compiled: Any  # policy.compile_policies(config.policies)
    loaded_at: datetime
    # (window id, target name) -> Integration; ("", name) for windows not in the file (manual)
    integrations: Mapping[tuple[str, str], Any] = field(default_factory=dict)


def build_integrations(cfg: Config) -> dict[tuple[str, str], Any]:
    """One client per distinct (target, merged settings), shared by the windows that use it."""
    import integrations

    from ..config.integrations import chosen

    made: dict[tuple[str, str], Any] = {}
    out: dict[tuple[str, str], Any] = {}
    manual = [(n, cfg.integrations[n].type, cfg.integrations[n].settings) for n in cfg.provider.integrations]
    for wid, pairs in [("", manual)] + [(w.id, list(chosen(cfg, w))) for w in cfg.windows]:
        for name, kind, settings in pairs:
            sig = (name, repr(sorted(settings.items())))
            if sig not in made:
                try:
                    made[sig] = integrations.build(name, {"type": kind, **settings})
                except ValueError as exc:
                    line = cfg.integrations[name].line
                    raise ConfigError([ConfigIssue(cfg.path, line, 1, str(exc))]) from None
            out[(wid, name)] = made[sig]
    return out


def build_generation(cfg: Config, loaded_at: datetime) -> Generation:
    """Everything derived from a config; raises ConfigError when a template is broken."""
    from notifiers import Renderer, build_notifiers

    renderer = Renderer(cfg.provider.name, cfg.notifiers.templates)
    # Only a provider's own templates can be broken: the shipped ones are checked by the test
    # suite (test_notifiers_render, test_notifiers_locale), and compiling and rendering all of
    # them in every locale cost ~0.2 s of each start and reload (benchmarks/notify_bench.py).
    problems = renderer.check() if renderer.template_dir else []
    if problems:
        raise ConfigError([ConfigIssue(p.split(":", 1)[0], 1, 1, p) for p in problems])
    notifiers = {n.channel: n for n in build_notifiers(cfg.notifiers, cfg.provider.name, renderer)}
    notifiers.update(chat_registry(cfg, renderer))
    return Generation(
        config=cfg,
        renderer=renderer,
        notifiers=notifiers,
        compiled=compile_policies(cfg.policies),
        loaded_at=loaded_at,
        integrations=build_integrations(cfg),
    )


def channel_key(channel: str, url: str) -> str:
    """The outbox channel of one Apprise URL: ``apprise:ntfy#<8 hex>``. Two URLs of one scheme
    are two deliveries, so the key names the URL by a hash (never the URL, a secret); the
    part before ``#`` is the channel shown (:func:`shown_channel`)."""
    return f"{channel}#{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def shown_channel(channel: str) -> str:
    """``apprise:ntfy#1a2b3c4d`` -> ``apprise:ntfy``; other channels as they are."""
    return channel.split("#", 1)[0]


def chat_registry(cfg: Config, renderer: Any) -> dict[str, Any]:
    """Tenant chat notifiers and the provider's ops rooms, keyed by :func:`channel_key`."""
    ops = cfg.provider.ops
    if not ops or not ops.urls:
        if not any(t.notify_urls for t in cfg.tenants.values()):
            return {}  # never import Apprise for a config without a URL
    from notifiers import OpsNotifier, build_chat_notifiers

    timeout = cfg.notifiers.webhook.timeout
    chats = build_chat_notifiers(cfg.tenants.values(), renderer, timeout=timeout)
    out: dict[str, Any] = {channel_key(n.channel, url): n for url, n in chats.items()}
    for url in ops.urls if ops else ():
        n = OpsNotifier(url, provider=cfg.provider.name, events=ops.events if ops else (), timeout=timeout)
        out[channel_key(f"ops:{n.channel}", url)] = n
    return out


@dataclass(frozen=True)
class ReloadResult:
    at: datetime
    error: str | None  # None: the new generation is current
    generation: Generation  # the current one after this reload


class Generations:
    """The current generation, and the reloads that replace it.

    ``load`` reads the file (``config.load``); a failed load keeps the last good
    generation and remembers the error until a load succeeds.
    """

    def __init__(self, first: Generation, load: Callable[[], Config], clock: Callable[[], datetime]) -> None:
        self._current = first
        self._load = load
        self._clock = clock
        self._reloading = threading.Lock()  # one reload at a time: the last one reads the newest file
        self.error: str | None = None
        self.reloaded_at: datetime = first.loaded_at

    @property
    def current(self) -> Generation:
        return self._current  # one attribute read: atomic

    @property
    def config(self) -> Config:
        return self._current.config

    def reload(self) -> ReloadResult:
        with self._reloading:
            now = self._clock()
            try:
                generation = build_generation(self._load(), now)
            except ConfigError as exc:
                self.error = "; ".join(str(i) for i in exc.issues[:20])
                self.reloaded_at = now
                return ReloadResult(now, self.error, self._current)
            old, self._current = self._current, generation
            self.error = None
            self.reloaded_at = now
            retire(old, generation)
            return ReloadResult(now, None, generation)


def retire(old: Generation, new: Generation | None = None) -> None:
    """Close what the replaced (or, at stop, the last) generation's notifiers hold open (an
    email notifier's idle SMTP connections); a send still in flight finishes and closes its own."""
    for channel, notifier in old.notifiers.items():
        close = getattr(notifier, "close", None)
        if close is None or (new is not None and new.notifiers.get(channel) is notifier):
            continue
        try:
            close()
        except Exception:  # noqa: BLE001 - a reload must not fail on a goodbye
            log.warning("closing the replaced %s notifier failed", channel, exc_info=True)
