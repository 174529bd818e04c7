"""When people answer: the human agents' service hours, and what a member is told on a handoff.

``SIYU_HANDOFF_HOURS`` is a daily window ``HH:MM-HH:MM`` in the brand's timezone
(``SIYU_TIMEZONE``). Decisions:

- The window is the same every day (no weekday or holiday calendar yet).
- An end earlier than the start crosses midnight (``20:00-02:00``); equal ends mean round the clock.
- The start is inclusive, the end exclusive: at 21:00 sharp a ``09:00-21:00`` desk is closed.
- Outside the window the member is told when the next opening is ("今天 9 点后", "明早 9 点后"),
  so nobody waits in silence without knowing for how long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Final


@dataclass(frozen=True, slots=True)
class ServiceHours:
    """A daily window in local time during which human agents answer."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> ServiceHours:
        """``"09:00-21:00"`` → the window; ValueError for anything else."""
        parts = text.strip().split("-")
        try:
            start, end = (time.fromisoformat(p.strip()) for p in parts)
        except ValueError as exc:
            raise ValueError(f"service hours must look like 09:00-21:00, got {text!r}") from exc
        return cls(start, end)

    @property
    def always(self) -> bool:
        """True when people answer round the clock (start equals end)."""
        return self.start == self.end

    def is_open(self, local: time) -> bool:
        """True when ``local`` (a wall-clock time in the brand's timezone) is inside the window."""
        if self.always:
            return True
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def label(self) -> str:
        """``09:00–21:00`` (as members read it)."""
        if self.always:
            return "全天 24 小时"
        return f"{self.start:%H:%M}–{self.end:%H:%M}"

    def next_opening(self, now: datetime, tz: tzinfo) -> datetime:
        """The next start of the window after ``now`` (aware), in ``tz``."""
        local = now.astimezone(tz)
        today = datetime.combine(local.date(), self.start, tzinfo=tz)
        return today if today > local else today + timedelta(days=1)

    def handoff_notice(self, now: datetime, tz: tzinfo) -> str:
        """When a person will answer, said to the member on a handoff."""
        if self.is_open(now.astimezone(tz).time()):
            return "客服同事会尽快回复您，请稍候"
        return (
            f"人工客服工作时间 {self.label()}，现在不在工作时间，"
            f"{_when(self.next_opening(now, tz), now.astimezone(tz))}会有同事回复您"
        )


DEFAULT_HANDOFF_HOURS: Final = ServiceHours(time(9, 0), time(21, 0))
"""People answer 09:00–21:00 unless ``SIYU_HANDOFF_HOURS`` says otherwise."""


def _when(opening: datetime, local: datetime) -> str:
    """``今天 9 点后`` / ``明早 9 点后`` / ``明天 13:30 后``."""
    clock = f"{opening.hour} 点" if opening.minute == 0 else f"{opening:%H:%M} "
    if opening.date() == local.date():
        return f"今天 {clock}后"
    day = "明早" if opening.hour < 12 else "明天"
    return f"{day} {clock}后"
