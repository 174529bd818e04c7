"""The one clock: every part that needs "now" takes a :data:`Clock` and defaults to :func:`utc_now`.

Injected (never read from a global) so tests pin time. Always timezone-aware UTC; local dates
(quiet hours, "today" for a store) are derived with the brand's time zone where they are needed.
``knowledge`` keeps its own default (it imports nothing from ``bot``); monotonic clocks for
rate limits and token lifetimes are a different thing (``time.monotonic``) and stay separate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""


def utc_now() -> datetime:
    """The default :data:`Clock`: now, in UTC."""
    return datetime.now(UTC)
