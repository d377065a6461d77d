"""Why a notice was sent, in the tenant's language (SPEC 8: a halt's ``cancelled`` says why).

The plan writes a reason in English (:func:`halted_reason`); :func:`reason_text` gives it
in each locale maintd ships. Ground: imports nothing of ours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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
