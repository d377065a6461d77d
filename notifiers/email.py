"""Email: multipart text + HTML with an iCalendar invitation, over SMTP."""

from __future__ import annotations

import secrets
import smtplib
import ssl
from email import charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

from scheduler.errors import DeliveryError
from scheduler.model import EmailSettings, Notice, Tenant

from .base import Renderer
from .smtp_pool import POOL_SIZE, RateLimit, SmtpPool


# The MIME classes with compat32 headers (plain strings): building a message this way costs
# ~1.6 ms where EmailMessage's parsed headers cost ~4 ms, and CPU is what limits email fan-out
# (benchmarks/email_bench.py). RFC 5322 allows 998 octets, so headers are not folded at 78
# (CPython's folding before an encoded word unfolds to two spaces: "update  — Sat").
class _Compat32(Compat32):
    """compat32 with its common case taken directly: a printable ASCII header value without
    runs of spaces that fits on its line is written as it is -- what ``Header(value).encode()``
    gives back for it (tests/test_email_wire.py compares the two), without its ~40 us a header
    on every send."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and "  " not in value
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[misc] # not in typeshed


_POLICY = _Compat32(max_line_length=998)
_WIRE = _POLICY.clone(linesep="\r\n")  # smtplib sends bytes as they are: SMTP wants CRLF
_UTF8 = charset.Charset("utf-8")
# B-encoded words: the stdlib sizes Q-encoded ones by re-measuring every prefix (quadratic in
# the subject's length at 998 columns; ~0.15 ms of a message's ~1.7 ms).
_UTF8.header_encoding = charset.BASE64
_UTF8.body_encoding = charset.QP  # 7-bit clean: any relay takes it, no SMTPUTF8 needed


def _header(value: str) -> str | Header:
    """One line; RFC 2047 encoded words on the wire when not ASCII (``str()`` gives the text back)."""
    value = " ".join(value.split())
    return value if value.isascii() else Header(value, _UTF8, maxlinelen=998)


def _boundary() -> str:
    """A MIME boundary no body can contain by chance (128 random bits). The stdlib would make
    one per part and compile a regular expression to check it against the text: ~10 % of a
    send's CPU."""
    return f"=_maintd_{secrets.token_hex(16)}"


def _part(content: str | bytes, subtype: str) -> MIMEText:
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    return MIMEText(text, subtype, _UTF8)  # type: ignore[arg-type] # a Charset: its QP body encoding


def _address(value: str) -> str:
    name, addr = parseaddr(value)
    return formataddr((" ".join(name.split()), addr), charset=_UTF8) if name else addr


class EmailNotifier:
    channel = "email"

    def __init__(self, settings: EmailSettings, renderer: Renderer, *, connections: int | None = None) -> None:
        self.settings = settings
        self.renderer = renderer
        # Connections to the relay are reused (a bounded pool); sends start at most at its rate.
        self.pool = SmtpPool(self._connect, size=connections or settings.connections or POOL_SIZE)
        self.rate = RateLimit(settings.rate)

    def applies_to(self, tenant: Tenant) -> bool:
        return bool(tenant.email)

    def target_for(self, tenant: Tenant) -> str | None:
        """The addresses as ``notices`` shows them (an address is no secret)."""
        return ", ".join(tenant.email) or None

    def build_message(self, notice: Notice, tenant: Tenant) -> Message:
        rendered = self.renderer.render(notice, tenant, organizer=self.settings.sender)
        body = MIMEMultipart("alternative", boundary=_boundary())
        body.attach(_part(rendered.text, "plain"))
        body.attach(_part(rendered.html, "html"))
        cancel = notice.kind == "cancelled"
        ics = _part(rendered.ics, "calendar")
        ics.set_param("method", "CANCEL" if cancel else "REQUEST")
        ics.add_header("Content-Disposition", "attachment", filename="cancel.ics" if cancel else "invite.ics")
        msg = MIMEMultipart("mixed", boundary=_boundary(), policy=_POLICY)
        msg["Subject"] = _header(rendered.subject)  # type: ignore[assignment]
        msg["From"] = _address(self.settings.sender)
        msg["To"] = ", ".join(tenant.email)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        # Derived from the notice id: a retry after a lost "250" is recognisably the same mail.
        msg["Message-ID"] = f"<{notice.id}@{self._domain()}>"
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        msg.attach(body)
        msg.attach(ics)
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
                refused = smtp.sendmail(parseaddr(s.sender)[1], list(tenant.email), msg.as_bytes(policy=_WIRE))
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
