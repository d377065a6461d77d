"""The tenant page's fixed texts per language (SPEC 4.3); dates come from Babel
(``notifiers.i18n.format_local``). A locale maintd has no strings for reads English, but
config validation already refuses such a locale, so that is only a safety net."""

from __future__ import annotations

from collections.abc import Mapping

PAGE: Mapping[str, Mapping[str, str]] = {
    "en": {
        "title": "{provider} maintenance — {name}",
        "heading": "{provider} maintenance for {name}",
        "in_progress": "Maintenance in progress",
        "until": "until {until}",
        "to": "to",
        "while_runs": "While it runs:",
        "allowed": "allowed",
        "paused": "paused",
        "anything_else": "anything else",
        "no_maintenance": "No maintenance in progress",
        "times": "Times are shown in {zone}. Now: {now}.",
        "upcoming": "Upcoming maintenance",
        "when": "When ({zone})",
        "what": "What",
        "while_col": "While it runs",
        "affects": "affects",
        "none_planned": "No maintenance planned in the next 90 days.",
        "cancelled_heading": "Cancelled",
        "cancelled": "cancelled",
        "subscribe": 'Subscribe to <a href="calendar.ics">this calendar</a> to follow changes in your calendar app.',
        "now": "now",
        "in": "in {span}",
    },
    "de": {
        "title": "{provider}: Wartung — {name}",
        "heading": "{provider}: Wartung für {name}",
        "in_progress": "Wartung läuft",
        "until": "bis {until}",
        "to": "bis",
        "while_runs": "Während der Wartung:",
        "allowed": "erlaubt",
        "paused": "pausiert",
        "anything_else": "alles andere",
        "no_maintenance": "Keine Wartung im Gange",
        "times": "Alle Zeiten in {zone}. Jetzt: {now}.",
        "upcoming": "Geplante Wartungen",
        "when": "Wann ({zone})",
        "what": "Was",
        "while_col": "Während der Wartung",
        "affects": "betrifft",
        "none_planned": "In den nächsten 90 Tagen ist keine Wartung geplant.",
        "cancelled_heading": "Abgesagt",
        "cancelled": "abgesagt",
        "subscribe": 'Abonnieren Sie <a href="calendar.ics">diesen Kalender</a>, um Änderungen in Ihrer '
        "Kalender-App zu sehen.",
        "now": "jetzt",
        "in": "in {span}",
    },
    "fr": {
        "title": "{provider} : maintenance — {name}",
        "heading": "{provider} : maintenance pour {name}",
        "in_progress": "Maintenance en cours",
        "until": "jusqu’au {until}",
        "to": "au",
        "while_runs": "Pendant la maintenance :",
        "allowed": "autorisé",
        "paused": "suspendu",
        "anything_else": "tout le reste",
        "no_maintenance": "Aucune maintenance en cours",
        "times": "Heures affichées en {zone}. Maintenant : {now}.",
        "upcoming": "Maintenances prévues",
        "when": "Quand ({zone})",
        "what": "Quoi",
        "while_col": "Pendant la maintenance",
        "affects": "concerne",
        "none_planned": "Aucune maintenance prévue dans les 90 prochains jours.",
        "cancelled_heading": "Annulées",
        "cancelled": "annulée",
        "subscribe": 'Abonnez-vous à <a href="calendar.ics">ce calendrier</a> pour suivre les changements dans '
        "votre agenda.",
        "now": "maintenant",
        "in": "dans {span}",
    },
}


def page_strings(locale: str) -> Mapping[str, str]:
    """The page texts for a template locale (``de``, ``fr``, ``en``)."""
    return PAGE.get(locale) or PAGE["en"]


# The calendar feed (``/t/{secret}/calendar.ics``): the calendar's name, each event's SUMMARY,
# and the DESCRIPTION of a cancelled event (the window's "under maintenance until" would be untrue).
FEED: Mapping[str, Mapping[str, str]] = {
    "en": {
        "name": "{provider} maintenance ({name})",
        "summary": "{provider}: {title}",
        "cancelled": "Cancelled: {title} by {provider}, planned for {start} to {end}, will not take place.",
    },
    "de": {
        "name": "{provider}: Wartung ({name})",
        "summary": "Wartung {provider}: {title}",
        "cancelled": "Abgesagt: {title} von {provider}, geplant von {start} bis {end}, findet nicht statt.",
    },
    "fr": {
        "name": "{provider} : maintenance ({name})",
        "summary": "Maintenance {provider} : {title}",
        "cancelled": "Annulée : {title} de {provider}, prévue du {start} au {end}, n’aura pas lieu.",
    },
}


def feed_strings(locale: str) -> Mapping[str, str]:
    """The calendar feed's texts for a template locale."""
    return FEED.get(locale) or FEED["en"]
