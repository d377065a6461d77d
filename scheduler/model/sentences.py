"""The sentences maintd writes itself, in each language it ships (SPEC 4.3): its default
tenant message, what completed and cancelled notices say, and why a notice was sent (SPEC
8: a halt's ``cancelled`` says why).

The plan writes a reason in English (:func:`halted_reason`); :func:`reason_text` gives it
in each locale maintd ships. Ground: imports nothing of ours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Why a notice was sent, as the plan writes it (English) -> each shipped language. The
# plan's sentence is the key, so a reason without a translation is shown as written.
HALTED_REASON = "halted: end check of wave {wave} still failing"
_REASONS: tuple[tuple[re.Pattern[str], Mapping[str, str]], ...] = (
    (
        re.compile(r"halted: end check of wave (?P<wave>\d+) still failing"),
        {
            "en": HALTED_REASON,
            "de": "angehalten: die Abschlussprüfung von Welle {wave} schlägt weiterhin fehl",
            "fr": "interrompue : le contrôle de fin de la vague {wave} échoue toujours",
        },
    ),
)
_SENTENCES: Mapping[str, str] = {"en": "Reason: {reason}.", "de": "Grund: {reason}.", "fr": "Motif : {reason}."}


def language_of(locale: str | None) -> str:
    """``de-CH`` -> ``de``; None -> ``en``."""
    return (locale or "en").replace("_", "-").split("-", 1)[0].lower()


def halted_reason(wave: int) -> str:
    """The reason of a ``cancelled`` sent because wave ``wave``'s end check halted the later ones."""
    return HALTED_REASON.format(wave=wave)


def reason_text(reason: str, locale: str | None) -> str:
    """``reason`` in the language of ``locale`` (``en`` when maintd has none for it)."""
    language = language_of(locale)
    for pattern, texts in _REASONS:
        m = pattern.fullmatch(reason)
        if m is not None:
            return texts.get(language, texts["en"]).format(**m.groupdict())
    return reason


def reason_sentence(reason: str, locale: str | None) -> str:
    """``Reason: ...`` (``Grund: ...``, ``Motif : ...``): what a notice's message adds."""
    language = language_of(locale)
    return _SENTENCES.get(language, _SENTENCES["en"]).format(reason=reason_text(reason, language))


# maintd's default message (model.Provider's) translated for de/fr tenants: notices, refusals,
# the tenant page and feed. A provider's own message stays as written; its dates follow the locale.
DEFAULT_MESSAGES: Mapping[str, str] = {
    "en": "{provider} is under scheduled maintenance until {end}.",
    "de": "{provider} ist bis {end} in geplanter Wartung.",
    "fr": "{provider} est en maintenance planifiée jusqu’au {end}.",
}


def language(tenant: Any) -> str:  # de-AT -> de; no locale -> en
    return language_of(getattr(tenant, "locale", None))


def localized(text: str, tenant: Any) -> str:
    """maintd's default message in the tenant's language; any other text unchanged."""
    return DEFAULT_MESSAGES.get(language(tenant), text) if text == DEFAULT_MESSAGES["en"] else text


# What a completed or cancelled notice says instead of the window's "under maintenance
# until {end}" message, which would be untrue by then (placeholders as in PLACEHOLDERS).
AFTER_MESSAGES: Mapping[str, Mapping[str, str]] = {
    "completed": {
        "en": "Maintenance {title} by {provider} has ended at {end}.",
        "de": "Die Wartung {title} von {provider} ist seit {end} beendet.",
        "fr": "La maintenance {title} de {provider} est terminée depuis {end}.",
    },
    "cancelled": {
        "en": "Maintenance {title} by {provider}, planned for {start}, is cancelled.",
        "de": "Die für {start} geplante Wartung {title} von {provider} ist abgesagt.",
        "fr": "La maintenance {title} de {provider} prévue le {start} est annulée.",
    },
}
