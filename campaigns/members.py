"""Import members from a CSV file (``siyu members import FILE``), with a report of rejected rows.

Decisions:

- **The file, then the rows.** A file that cannot be read as CSV at all (an Excel workbook, an
  encoding other than UTF-8 / GB18030, no header, a required column missing, two columns meaning
  the same thing) raises :class:`ImportFileError` before anything is written. After that, every
  row stands alone: a bad row becomes a :class:`Rejected` with its line and a precise reason and
  never costs a good row its place. All checks happen in Python before the database sees a row,
  so a batch never fails halfway on a value PostgreSQL would refuse (too long, NUL byte).
- **Encodings.** UTF-8 (with or without BOM), else GB18030 (what Excel in China writes); a
  header line with tabs and no commas is read as tab-separated.
- **Header aliases.** Names are matched case-insensitively with spaces and hyphens read as ``_``;
  :data:`HEADER_ALIASES` maps the Chinese names operators use (渠道, 用户ID, 姓名, 门店, 标签,
  最近活跃, ...) to the canonical columns. Unknown columns are ignored.
- **Lines.** ``Rejected.line`` is the 1-based physical line where the record starts (what a text
  editor shows; equal to Excel's row number unless a quoted cell spans lines).
- **Dates never jump because of an import.** Empty ``first_seen`` / ``last_active`` mean ``now``
  only for a member created by the import. For an existing member an empty date changes nothing,
  and a given one moves ``last_active`` only forward and ``first_seen`` only backward (in SQL,
  so a message the bot logs meanwhile is not undone). Re-importing a tag list therefore never
  makes a dormant member look active.
- **Profiles are replaced column by column.** Every column the file has replaces the stored
  value (an empty cell clears it; an empty ``person`` means ``"m<member id>"``, an empty
  ``consent`` means yes); a column the file does not have keeps the stored value, so a file with
  only ``channel, external_id, tags`` updates tags without wiping stores or owners. ``consent``
  is marketing consent only; ``Member.opted_out`` (the member's own 退订) is never touched here.
- **Speed.** Rows are written in batches of ``batch_size``, one transaction per batch: existing
  ids are looked up in bulk, new members are inserted with one multi-row ``INSERT ... ON CONFLICT
  DO NOTHING RETURNING`` (a member the bot creates at the same moment is simply updated), existing
  ones updated with one ``executemany``, profiles upserted with one ``INSERT ... ON CONFLICT DO
  UPDATE``. Bulk statements stay far below PostgreSQL's 32,767 parameters (look-ups are chunked;
  SQLAlchemy pages multi-row inserts). A batch that committed stays committed if a later one fails;
  importing the same file again is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.models import Member, UTCDateTime, require_aware
from campaigns.member_csv import (
    HEADER_ALIASES,
    ImportFileError,
    MemberRow,
    Rejected,
    read_rows,
)
from campaigns.models import MemberProfile
from knowledge.sql import upsert

__all__ = [
    "HEADER_ALIASES", "MEMBER", "PROFILE", "ImportFileError", "ImportReport", "Rejected",
    "import_members", "plan_each_statement", "profile_row",
]  # fmt: skip

MEMBER: sa.Table = Member.__table__  # type: ignore[attr-defined]
PROFILE: sa.Table = MemberProfile.__table__  # type: ignore[attr-defined]
_LOOKUP_CHUNK = 5000


@dataclass(frozen=True)
class ImportReport:
    """Members created, members updated, and the rows rejected (in line order)."""

    created: int
    updated: int
    rejected: tuple[Rejected, ...]


async def import_members(
    engine: AsyncEngine,
    data: bytes,
    *,
    now: datetime,
    tz: ZoneInfo,
    batch_size: int = 1000,
) -> ImportReport:
    """Create or update the members (and their profiles) described by the CSV ``data``.

    Naive dates in the file are local to ``tz``. Raises :class:`ImportFileError` when the file
    as a whole is unusable; bad rows are reported, never raised.
    """
    require_aware(now)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    present, rows = read_rows(data, now=now, tz=tz)
    rejected: list[Rejected] = []
    created = updated = 0
    batch: list[MemberRow] = []
    for row in rows:
        if isinstance(row, Rejected):
            rejected.append(row)
            continue
        batch.append(row)
        if len(batch) >= batch_size:
            new, old = await _write_batch(engine, batch, present, now)
            created, updated, batch = created + new, updated + old, []
    if batch:
        new, old = await _write_batch(engine, batch, present, now)
        created, updated = created + new, updated + old
    return ImportReport(created, updated, tuple(rejected))


# --- writing ------------------------------------------------------------------------------------


async def plan_each_statement(conn: AsyncConnection) -> None:
    """On PostgreSQL, plan this transaction's statements for their actual parameters.

    asyncpg prepares statements; after five runs PostgreSQL may switch a bulk ``IN (...)``
    look-up to a generic plan that scans the whole (just grown, never analysed) table on every
    batch: 50x slower in our 100k-row import. Planning each batch's statements anew is cheap.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))


async def _write_batch(
    engine: AsyncEngine, rows: Sequence[MemberRow], present: frozenset[str], now: datetime
) -> tuple[int, int]:
    """Write one batch in one transaction; (members created, members updated)."""
    async with engine.begin() as conn:
        await plan_each_statement(conn)
        ids = await _existing_ids(conn, [row.key for row in rows])
        created = await _insert_members(conn, [r for r in rows if r.key not in ids], now)
        raced = [r.key for r in rows if r.key not in ids and r.key not in created]
        if raced:  # the bot created them between our look-up and our insert
            ids.update(await _existing_ids(conn, raced))
        await _update_members(conn, [row for row in rows if row.key in ids])
        ids.update(created)
        await _upsert_profiles(conn, rows, ids, present, now)
    return len(created), len(rows) - len(created)


async def _existing_ids(
    conn: AsyncConnection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    by_channel: dict[str, list[str]] = {}
    for channel, external_id in keys:
        by_channel.setdefault(channel, []).append(external_id)
    found: dict[tuple[str, str], int] = {}
    for channel, external_ids in by_channel.items():
        for start in range(0, len(external_ids), _LOOKUP_CHUNK):
            chunk = external_ids[start : start + _LOOKUP_CHUNK]
            result = await conn.execute(
                sa.select(MEMBER.c.id, MEMBER.c.external_id).where(
                    MEMBER.c.channel == channel, MEMBER.c.external_id.in_(chunk)
                )
            )
            found.update({(channel, ext): mid for mid, ext in result.all()})
    return found


async def _insert_members(
    conn: AsyncConnection, rows: Sequence[MemberRow], now: datetime
) -> dict[tuple[str, str], int]:
    if not rows:
        return {}
    values = [
        {
            "channel": row.channel,
            "external_id": row.external_id,
            "display_name": row.name or "",
            "first_seen": min(row.first_seen or now, row.last_active or now),
            "last_active": row.last_active or now,
            "opted_out": False,
            "handoff": False,
        }
        for row in rows
    ]
    statement = upsert(conn.dialect, MEMBER, ["channel", "external_id"]).returning(
        MEMBER.c.id, MEMBER.c.channel, MEMBER.c.external_id
    )
    result = await conn.execute(statement, values)
    return {(channel, ext): mid for mid, channel, ext in result.all()}


async def _update_members(conn: AsyncConnection, rows: Sequence[MemberRow]) -> None:
    if not rows:
        return
    name = sa.bindparam("b_name", type_=sa.String())
    seen = sa.bindparam("b_first_seen", type_=UTCDateTime())
    active = sa.bindparam("b_last_active", type_=UTCDateTime())
    # A NULL parameter compares as unknown, so the CASE keeps the stored value.
    statement = (
        MEMBER.update()
        .where(MEMBER.c.channel == sa.bindparam("b_channel"))
        .where(MEMBER.c.external_id == sa.bindparam("b_external_id"))
        .values(
            display_name=sa.func.coalesce(name, MEMBER.c.display_name),
            first_seen=sa.case((MEMBER.c.first_seen > seen, seen), else_=MEMBER.c.first_seen),
            last_active=sa.case(
                (MEMBER.c.last_active < active, active), else_=MEMBER.c.last_active
            ),
        )
    )
    params = [
        {
            "b_channel": row.channel,
            "b_external_id": row.external_id,
            "b_name": row.name,
            "b_first_seen": row.first_seen,
            "b_last_active": row.last_active,
        }
        for row in rows
    ]
    await conn.execute(statement, params)


async def _upsert_profiles(
    conn: AsyncConnection,
    rows: Sequence[MemberRow],
    ids: Mapping[tuple[str, str], int],
    present: frozenset[str],
    now: datetime,
) -> None:
    values = [profile_row(ids[row.key], now, **row.profile) for row in rows]
    replaced = [*sorted(present), "updated_at"]
    statement = upsert(conn.dialect, PROFILE, ["member_id"], replace=replaced)
    await conn.execute(statement, values)


def profile_row(member_id: int, now: datetime, **values: Any) -> dict[str, Any]:
    """A complete ``member_profile`` row: ``values`` over the defaults of a member nobody
    imported (person ``"m<id>"``, consent True, empty lists)."""
    row: dict[str, Any] = {
        "member_id": member_id, "person": None, "home_store": None, "tags": [], "interests": [],
        "owner_userid": None, "external_userid": None, "groups": [], "consent": True,
        "consent_at": None, "updated_at": now,
    }  # fmt: skip
    row.update(values)
    row["person"] = row["person"] or f"m{member_id}"
    return row
