"""Signed timestamps: one parser and one freshness window for every channel that signs requests.

The generic webhook (``X-Siyu-Timestamp``) and the WeChat / WeCom callbacks (the ``timestamp``
query parameter that ``signature`` / ``msg_signature`` cover) carry the sender's clock in Unix
seconds. A captured request can be replayed only while its timestamp is within
:data:`MAX_SKEW_S` of our clock; after that it is refused, whatever its signature.

Parsing is strict, and a parse error is the caller's 400, never a 500:

- ASCII digits only. ``str.isdigit()`` and ``int()`` accept far more (``"²".isdigit()`` is
  True and ``int("²")`` raises; ``int("１７７２")`` with full-width digits succeeds), so the
  check is a regular expression over ``[0-9]``;
- at most :data:`MAX_TIMESTAMP_DIGITS` digits, so ``int()`` never meets a number near Python's
  int-string conversion limit (4,300 digits, a ``ValueError``) and never spends time on one.

Decision: a malformed timestamp is a bad request (400: the sender does not speak the protocol);
a well-formed one outside the window is an authentication failure (the caller answers 401, as
for a wrong signature: the request was signed, just not now). The window is symmetric: a clock
ahead of ours by more than :data:`MAX_SKEW_S` is refused too, or a request signed for the
future could be replayed for longer.
"""

from __future__ import annotations

import re

MAX_SKEW_S = 300
"""How far (seconds, either way) a signed timestamp may be from our clock: WeChat's and the
webhook's 5 minutes."""

MAX_TIMESTAMP_DIGITS = 12
"""Unix seconds have 10 digits until the year 2286; more than 12 is not a timestamp."""

_DIGITS = re.compile(f"[0-9]{{1,{MAX_TIMESTAMP_DIGITS}}}")


class TimestampError(ValueError):
    """A signed timestamp the request cannot be served with; ``str()`` says why, in one line."""


class MalformedTimestamp(TimestampError):
    """Missing, not ASCII digits, or longer than :data:`MAX_TIMESTAMP_DIGITS` (answer 400)."""


class StaleTimestamp(TimestampError):
    """Further than :data:`MAX_SKEW_S` from our clock (answer 401): an old request replayed, or
    a sender whose clock is wrong."""


def parse_timestamp(raw: str, *, name: str = "timestamp") -> int:
    """``raw`` as Unix seconds; :class:`MalformedTimestamp` naming ``name`` unless it is 1 to
    :data:`MAX_TIMESTAMP_DIGITS` ASCII digits."""
    if not _DIGITS.fullmatch(raw):
        shown = "missing" if not raw else "not 1-12 ASCII digits"
        raise MalformedTimestamp(f"{name} is {shown}")
    return int(raw)


def check_fresh(timestamp: int, now: float, *, name: str = "timestamp") -> None:
    """:class:`StaleTimestamp` unless ``timestamp`` is within :data:`MAX_SKEW_S` of ``now``."""
    skew = now - timestamp
    if abs(skew) > MAX_SKEW_S:
        when = "old" if skew > 0 else "in the future"
        raise StaleTimestamp(
            f"{name} is {abs(skew):.0f} s {when}; at most {MAX_SKEW_S} s is accepted"
        )


def fresh_timestamp(raw: str, now: float, *, name: str = "timestamp") -> int:
    """:func:`parse_timestamp` then :func:`check_fresh`: the timestamp, if usable now."""
    timestamp = parse_timestamp(raw, name=name)
    check_fresh(timestamp, now, name=name)
    return timestamp
