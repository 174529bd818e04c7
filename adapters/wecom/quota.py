"""Per-recipient send quotas kept client-side, so a send the platform would refuse is never made.

WeCom's ``message/send`` allows each app at most 30 messages a minute and 1,000 an hour to one
member (DESIGN.md §3). :class:`RecipientQuota` counts sends per recipient in sliding windows and
says no *before* the call; the caller drops the message with a log line rather than wait (a reply
an hour late is worse than none, and the member can ask again). Recipients idle longer than the
longest window are forgotten, so memory stays bounded by the active ones.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

MESSAGE_SEND_LIMITS: tuple[tuple[int, float], ...] = ((30, 60.0), (1000, 3600.0))
"""``message/send`` to one member: (sends, seconds) pairs."""
_SWEEP_EVERY = 1024


class SlidingWindows:
    """At most ``count`` events in any ``seconds`` for every ``(count, seconds)`` limit, per key.

    The one in-process rate limiter of the WeCom adapters: per recipient for ``message/send``
    (:class:`RecipientQuota`), per robot for group robots (``adapters.wecom.robot``). Limits
    shared by several processes live in the database instead (``campaigns.ratelimit``).
    """

    def __init__(
        self, limits: Sequence[tuple[int, float]], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not limits or any(n < 1 or s <= 0 for n, s in limits):
            raise ValueError("limits are (sends >= 1, seconds > 0) pairs")
        self._limits = tuple(sorted(limits, key=lambda limit: limit[1]))
        self._longest = self._limits[-1][1]
        self._clock = clock
        self._sends: dict[str, deque[float]] = {}
        self._calls = 0

    def take(self, key: str = "") -> bool:
        """Count one event for ``key`` if every window has room; False (nothing counted) if not."""
        return self.wait(key) == 0.0

    def wait(self, key: str = "") -> float:
        """Count one event for ``key`` and return 0.0 if every window has room; else count
        nothing and return the seconds until the fullest window has room again."""
        now = self._clock()
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        times = self._sends.setdefault(key, deque())
        while times and times[0] <= now - self._longest:
            times.popleft()
        wait = max((_until_room(times, count, seconds, now) for count, seconds in self._limits))
        if wait == 0.0:
            times.append(now)
        return wait

    def __len__(self) -> int:
        return len(self._sends)

    def _sweep(self, now: float) -> None:
        idle = [k for k, t in self._sends.items() if not t or t[-1] <= now - self._longest]
        for key in idle:
            del self._sends[key]


class RecipientQuota(SlidingWindows):
    """``message/send``'s limits per recipient (:data:`MESSAGE_SEND_LIMITS` unless given)."""

    def __init__(
        self,
        limits: Sequence[tuple[int, float]] = MESSAGE_SEND_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(limits, clock=clock)


def _until_room(times: deque[float], count: int, seconds: float, now: float) -> float:
    """Seconds until fewer than ``count`` of ``times`` (ascending) lie in the last ``seconds``."""
    if len(times) < count:
        return 0.0
    oldest_counted = times[-count]
    return max(0.0, oldest_counted + seconds - now) if oldest_counted > now - seconds else 0.0
