"""Email: multipart text + HTML with an iCalendar invitation, over SMTP."""

from __future__ import annotations

import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from scheduler.errors import DeliveryError
from scheduler.model import EmailSettings, Notice, Tenant

from .base import Renderer
from .smtp_pool import POOL_SIZE, RateLimit, SmtpPool

# CPython folds a long header before an encoded word as "word \r\n =?..?=", which unfolds
# to two spaces ("update  — Sat"); RFC 5322 allows 998 octets, so don't fold at 78.
_POLICY = policy.default.clone(max_line_length=998)


class EmailNotifier:
    channel = "email"

    def __init__(self, settings: EmailSettings, renderer: Renderer, *, connections: int = POOL_SIZE) -> None:
        self.settings = settings
        self.renderer = renderer
        # Connections to the relay are reused (a bounded pool); sends start at most at its rate.
        self.pool = SmtpPool(self._connect, size=connections)
        self.rate = RateLimit(settings.rate)

    def applies_to(self, tenant: Tenant) -> bool:
        return bool(tenant.email)

    def build_message(self, notice: Notice, tenant: Tenant) -> EmailMessage:
        rendered = self.renderer.render(notice, tenant, organizer=self.settings.sender)
        msg = EmailMessage(policy=_POLICY)
        msg["Subject"] = rendered.subject
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(tenant.email)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        # Derived from the notice id: a retry after a lost "250" is recognisably the same mail.
        msg["Message-ID"] = f"<{notice.id}@{self._domain()}>"
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        cancel = notice.kind == "cancelled"
        msg.add_attachment(
            rendered.ics,
            maintype="text",
            subtype="calendar",
            filename="cancel.ics" if cancel else "invite.ics",
            params={"method": "CANCEL" if cancel else "REQUEST", "charset": "utf-8"},
        )
        return msg

    def send(self, notice: Notice, tenant: Tenant) -> None:
        if not tenant.email:
            raise DeliveryError(f"tenant {tenant.id} has no email address", permanent=True)
        try:
            msg = self.build_message(notice, tenant)
        except Exception as exc:  # noqa: BLE001 - a template error; the same input fails again
            raise DeliveryError(f"cannot render the {notice.kind} email: {exc}", permanent=True) from exc
        s = self.settings
        where = f"{s.host}:{s.port}"
        self.rate.wait()
        try:
            # A connection that raises is dropped by the pool; the outbox retries the message.
            with self.pool.connection(timeout=s.timeout.total_seconds()) as smtp:
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(exc.recipients, where) from None
        except smtplib.SMTPAuthenticationError as exc:
            # Never the password: only who tried and what the server said.
            raise DeliveryError(
                f"SMTP {where} refused login for {s.username!r}: {exc.smtp_code} {_text(exc.smtp_error)}",
                permanent=True,
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {where} answered {exc.smtp_code} {_text(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
                detail={"code": exc.smtp_code},
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            # The server lacks STARTTLS or AUTH: a configuration problem a retry won't fix.
            raise DeliveryError(f"SMTP {where}: {exc}", permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"SMTP {where}: TLS certificate not trusted: {exc.verify_message}", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            # Refused connections, timeouts, DNS, disconnects: the server may be back later.
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise DeliveryError(f"SMTP {where}: {reason}", permanent=False) from None
        if refused:
            # Some recipients got it and a retry would mail them twice: report, don't retry.
            raise _refused(refused, where, partial=True)

    def close(self) -> None:
        """Close the idle connections to the relay."""
        self.pool.close()

    def _connect(self) -> smtplib.SMTP:
        """A connection ready to send: greeted, after STARTTLS and login when configured."""
        s = self.settings
        timeout = s.timeout.total_seconds()
        if s.ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=timeout)
        try:
            if s.starttls and not s.ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.username:
                smtp.login(s.username, s.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _domain(self) -> str:
        address = parseaddr(self.settings.sender)[1]
        return address.rpartition("@")[2] or "maintd"


def _refused(recipients: dict, where: str, partial: bool = False) -> DeliveryError:
    """Recipients refused at RCPT: permanent, unless every refusal is a 4xx (greylisting)
    and nobody got the message yet."""
    codes = {addr: code for addr, (code, _) in recipients.items()}
    text = ", ".join(f"{addr} ({code} {_text(resp)})" for addr, (code, resp) in recipients.items())
    return DeliveryError(
        f"SMTP {where} refused recipients: {text}",
        permanent=partial or any(code >= 500 for code in codes.values()),
        detail={"refused": codes},
    )


def _text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return " ".join(raw.split())[:200]
