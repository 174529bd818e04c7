"""Move the demo's dates forward by whole months, so the demo stays current when run later.

The demo files are written as of :data:`REFERENCE_DATE`. Shifting every date by the number of
months between the reference month and today's month keeps each promotion's status for *any* day
of today's month: the expired promotion ends before the 1st of the reference month, the future one
starts after its end, and the current ones start before its 1st and end months after it.

Dates are rewritten in both spellings the demo uses: ISO ``2026-11-30`` (front matter) and
``2026年11月30日`` (text), so what a promotion says always matches its validity window. A date on
the last day of its month stays on the last day (``2026-11-30`` + 3 months is ``2027-02-28``).
"""

from __future__ import annotations

import calendar
import re
from datetime import date

REFERENCE_DATE = date(2026, 11, 25)
"""The day the demo's dates were written for."""

_ISO_DATE = re.compile(r"(?<!\d)(20\d\d)-(\d{2})-(\d{2})(?!\d)")
_CHINESE_DATE = re.compile(r"(?<!\d)(20\d\d)年(\d{1,2})月(\d{1,2})日")


def months_since_reference(today: date) -> int:
    """Whole calendar months from the reference month to ``today``'s month; never negative."""
    months = (today.year - REFERENCE_DATE.year) * 12 + today.month - REFERENCE_DATE.month
    return max(0, months)


def shift_date(day: date, months: int) -> date:
    """``day`` moved by ``months``; the day of month is clamped, a month's last day stays last."""
    year, month_index = divmod(day.year * 12 + day.month - 1 + months, 12)
    month = month_index + 1
    last_day = calendar.monthrange(year, month)[1]
    was_last = day.day == calendar.monthrange(day.year, day.month)[1]
    return date(year, month, last_day if was_last else min(day.day, last_day))


def shift_text(text: str, months: int) -> str:
    """``text`` with every ISO and Chinese-style date moved by ``months``."""
    if months == 0:
        return text

    def iso(match: re.Match[str]) -> str:
        return shift_date(_date_of(match), months).isoformat()

    def chinese(match: re.Match[str]) -> str:
        moved = shift_date(_date_of(match), months)
        return f"{moved.year}年{moved.month}月{moved.day}日"

    return _CHINESE_DATE.sub(chinese, _ISO_DATE.sub(iso, text))


def _date_of(match: re.Match[str]) -> date:
    year, month, day = (int(part) for part in match.groups())
    return date(year, month, day)
