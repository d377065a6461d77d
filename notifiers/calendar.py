"""iCalendar for notices (an invitation per email) and for a tenant's subscribed feed.

The same UID reaches a tenant twice -- in the email invitation and in the feed -- so
both are built here, from the same rules, and a calendar client merges them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import parseaddr

from icalendar import Calendar, Event, vCalAddress, vText

from scheduler.model import UTC, Notice, calendar_uid

PRODID = "-//maintd//EN"


def build_ics(
    notice: Notice,
    *,
    organizer: str | None = None,
    attendees: Sequence[str] = (),
    now: datetime | None = None,
    summary: str | None = None,
    description: str | None = None,
) -> bytes:
    """One VEVENT as an iTIP message: ``REQUEST`` for every kind, ``CANCEL`` for cancelled.

    ``organizer`` is an address (``noc@example.com`` or ``Name <noc@example.com>``); clients
    that follow RFC 5546 ignore invitations without one. ``now`` is the DTSTAMP (the loop's
    clock; defaults to the current time). ``summary`` and ``description`` are the tenant's
    language (the renderer's calendar templates); they default to the title and message.
    """
    cancelled = notice.kind == "cancelled"
    cal = _calendar()
    cal.add("method", "CANCEL" if cancelled else "REQUEST")
    event = _event(
        uid=notice.uid or calendar_uid(notice.window, notice.occurrence, recurring=False),
        sequence=notice.sequence,
        start=notice.start,
        end=notice.end,
        title=summary or notice.title,
        message=notice.message if description is None else description,
        url=notice.link,
        cancelled=cancelled,
        stamp=now,
    )
    if organizer:
        event.add("organizer", _address(organizer))
    for attendee in attendees:
        # RSVP=FALSE: a tenant cannot decline a provider's maintenance; don't offer buttons.
        event.add("attendee", _address(attendee, {"ROLE": "NON-PARTICIPANT", "RSVP": "FALSE", "PARTSTAT": "ACCEPTED"}))
    cal.add_component(event)
    return cal.to_ical()


def build_feed(events: Iterable[Mapping], *, name: str, now: datetime | None = None) -> bytes:
    """A subscribed calendar (no METHOD): each dict has uid, sequence, start, end, title,
    message, cancelled and optionally exdates (datetimes), rrule, url, stamp.

    Cancelled occurrences stay in the feed with STATUS:CANCELLED instead of vanishing, so a
    client that already shows them strikes them through rather than keeping a stale copy.
    """
    cal = _calendar()
    cal.add("name", name)
    cal.add("x-wr-calname", name)
    # Clients poll subscriptions rarely by default (Outlook: daily); ask for hourly.
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT1H")
    for item in events:
        event = _event(
            uid=item["uid"],
            sequence=item.get("sequence", 0),
            start=item["start"],
            end=item["end"],
            title=item["title"],
            message=item.get("message") or "",
            url=item.get("url"),
            cancelled=bool(item.get("cancelled")),
            stamp=item.get("stamp") or now,
        )
        if item.get("rrule"):
            event.add("rrule", item["rrule"])
        exdates = [d.astimezone(UTC) for d in item.get("exdates") or ()]
        if exdates:
            event.add("exdate", exdates)
        cal.add_component(event)
    return cal.to_ical()


def _calendar() -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    return cal


def _event(
    *,
    uid: str,
    sequence: int,
    start: datetime,
    end: datetime,
    title: str,
    message: str,
    url: str | None,
    cancelled: bool,
    stamp: datetime | None,
) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("sequence", int(sequence))
    event.add("dtstamp", (stamp or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0))
    # UTC on the wire: no VTIMEZONE to get wrong; the client shows its own zone.
    event.add("dtstart", start.astimezone(UTC))
    event.add("dtend", end.astimezone(UTC))
    event.add("summary", title)
    if message:
        event.add("description", message)
    if url:
        event.add("url", url)
    # The provider's maintenance must not mark the tenant's people as busy.
    event.add("transp", "TRANSPARENT")
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    return event


def _address(text: str, params: Mapping[str, str] | None = None) -> vCalAddress:
    display, addr = parseaddr(text)
    value = vCalAddress(f"mailto:{addr or text}")
    if display:
        value.params["CN"] = vText(display)
    for key, val in (params or {}).items():
        value.params[key] = val
    return value
