"""Promotions as campaigns see them, chosen by validity and store.

The knowledge base keeps promotions as records (:class:`knowledge.records.Promotion`, built by
:func:`knowledge.records.promotions_from_chunks` from the active chunks); the same records answer
members' questions about deals, so a push and an answer never disagree.

:func:`valid_promotions` applies the retail rules of DESIGN.md §4: a promotion is used only while it
is valid (bounds inclusive, as :meth:`DocumentMeta.is_valid_at`) and only for its store. Validity
is judged at ``start`` (the send time, or the start of the day's window): a promotion that ends
later that day is still today's deal, and the outbox row carrying it expires at its ``valid_to``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from knowledge.records import Promotion, join_chunks, promotions_from_chunks

__all__ = ["Promotion", "day_window", "join_chunks", "promotions_from_chunks", "valid_promotions"]


def valid_promotions(
    promotions: Sequence[Promotion],
    *,
    store_id: str | None,
    start: datetime,
    end: datetime | None = None,
) -> list[Promotion]:
    """The promotions valid at ``start`` for ``store_id``, in their given order.

    ``store_id=None`` (a chain-wide audience) gets all-store promotions only. ``end`` names the
    window being planned (e.g. :func:`day_window`); it does not narrow the choice: being valid
    at ``start`` is enough, and a promotion that starts after ``start`` is never used.
    """
    if start.tzinfo is None:
        raise ValueError("valid_promotions needs an aware start datetime")
    if end is not None and end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    return [p for p in promotions if p.applies_to_store(store_id) and p.is_valid_at(start)]


def day_window(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight of ``day`` to the next local midnight, as aware UTC datetimes."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)
