"""Tenant-facing message templates; they live in :mod:`scheduler.notices` now.

Kept so ``from scheduler.messages import render`` (config, policy, web) keeps working.
"""

from __future__ import annotations

from .notices import PLACEHOLDERS, FormatTime, check_template, fill_message, format_local, localized, render

__all__ = ["PLACEHOLDERS", "FormatTime", "check_template", "fill_message", "format_local", "localized", "render"]
