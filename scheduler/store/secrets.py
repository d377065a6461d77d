"""Tenant page secrets: the token in a tenant's page and calendar URLs, and the key of the
tenant page's form tokens (SPEC 9: kept here, so every instance sharing the store, and the
same one after a restart, accepts a form another rendered).

Bound to the caller's connection like every repository, so a transaction that builds
a notice can make a tenant's secret and read it back before it commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from ..model import UTC
from .base import Repository
from .schema import meta, tenant_secrets

__all__ = ["Secrets"]

FORM_KEY = "form_key"  # the ``meta`` row of the form-token key (hex; never shown)
LEASE_KEY = "lease_key"  # the ``meta`` row of the key sealing lease secrets (scheduler.leasetoken)


class Secrets(Repository):
    def tenant_secret(
        self,
        tenant: str,
        create: bool = True,
        token_factory: Callable[[], str] = secrets.token_urlsafe,
        *,
        now: datetime | None = None,
    ) -> str | None:
        """The secret in a tenant's page and calendar URLs, made on first use when ``create``.

        ``now`` defaults to the clock: ``created_at`` is a record, not an input to any decision.
        """
        query = sa.select(tenant_secrets.c.secret).where(tenant_secrets.c.tenant == tenant)
        secret = self._run("read a tenant secret", query).scalar()
        if secret is None and create:
            values = dict(tenant=tenant, secret=token_factory(), created_at=now or datetime.now(UTC))
            statement = self._insert(tenant_secrets).values(**values).on_conflict_do_nothing(index_elements=["tenant"])
            self._run("read a tenant secret", statement)
            secret = self._run("read a tenant secret", query).scalar()
        return secret

    def rotate_secret(
        self, tenant: str, token_factory: Callable[[], str] = secrets.token_urlsafe, *, now: datetime | None = None
    ) -> str:
        """A new secret for the tenant; the old URLs stop working at once."""
        secret = token_factory()
        values = dict(secret=secret, created_at=now or datetime.now(UTC))
        statement = self._insert(tenant_secrets).values(tenant=tenant, **values)
        self._run("rotate a tenant secret", statement.on_conflict_do_update(index_elements=["tenant"], set_=values))
        return secret

    def tenant_for_secret(self, secret: str) -> str | None:
        query = sa.select(tenant_secrets.c.tenant).where(tenant_secrets.c.secret == secret)
        return self._run("read a tenant secret", query).scalar()

    def form_key(self) -> bytes:
        """The key of the tenant page's form tokens (SPEC 9)."""
        return self.store_key(FORM_KEY)

    def store_key(self, name: str, key_factory: Callable[[], str] = lambda: secrets.token_hex(32)) -> bytes:
        """A key kept in the ``meta`` table (the form-token key, the lease-sealing key), drawn
        once per store on first use, so every instance and every restart uses the same one.

        Two instances drawing at once both insert-or-ignore and read back the winner.
        """
        query = sa.select(meta.c.value).where(meta.c.key == name)
        value = self._run(f"read the {name}", query).scalar()
        if value is None:
            statement = self._insert(meta).values(key=name, value=key_factory())
            self._run(f"store the {name}", statement.on_conflict_do_nothing(index_elements=["key"]))
            value = self._run(f"read the {name}", query).scalar()
        return bytes.fromhex(str(value))
