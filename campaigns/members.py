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

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.models import Member, UTCDateTime, require_aware
from campaigns.models import MemberProfile

MEMBER: sa.Table = Member.__table__  # type: ignore[attr-defined]
PROFILE: sa.Table = MemberProfile.__table__  # type: ignore[attr-defined]

COLUMNS = (
    "channel", "external_id", "name", "person", "home_store", "tags", "interests",
    "owner_userid", "external_userid", "groups", "consent", "consent_at", "first_seen",
    "last_active",
)  # fmt: skip
REQUIRED = ("channel", "external_id")
PROFILE_COLUMNS = (
    "person", "home_store", "tags", "interests", "owner_userid", "external_userid", "groups",
    "consent", "consent_at",
)  # fmt: skip

HEADER_ALIASES: dict[str, str] = {
    "渠道": "channel",
    "用户id": "external_id",
    "外部id": "external_id",
    "openid": "external_id",
    "姓名": "name",
    "昵称": "name",
    "会员号": "person",
    "客户编号": "person",
    "门店": "home_store",
    "所属门店": "home_store",
    "标签": "tags",
    "兴趣": "interests",
    "跟进员工": "owner_userid",
    "负责人": "owner_userid",
    "外部联系人id": "external_userid",
    "群": "groups",
    "所在群": "groups",
    "营销同意": "consent",
    "同意营销": "consent",
    "同意时间": "consent_at",
    "首次访问": "first_seen",
    "首次出现": "first_seen",
    "最近活跃": "last_active",
    "最后活跃": "last_active",
}
"""Chinese (and platform) header names → canonical columns; keys are already normalised."""

MAX_FIELDS = 64
_TEXT_LIMITS = {
    "name": 255, "person": 128, "home_store": 64, "owner_userid": 128, "external_userid": 128,
}  # fmt: skip
_LIST_COLUMNS = ("tags", "interests", "groups")
_DATE_COLUMNS = ("consent_at", "first_seen", "last_active")
_CHANNEL = re.compile(r"[a-z0-9._-]{1,64}")
_EXCEL_NUMBER = re.compile(r"\d(?:\.\d+)?[eE]\+\d+")
_LIST_SPLIT = re.compile(r"[;|，、,；]")
_WHEN = re.compile(
    r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_YES = frozenset({"1", "true", "yes", "y", "是", "同意"})
_NO = frozenset({"0", "false", "no", "n", "否", "拒绝"})
_FUTURE_SLACK = timedelta(days=1)
_LOOKUP_CHUNK = 5000


@dataclass(frozen=True)
class Rejected:
    """A row left out of the import: its 1-based CSV line and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class ImportReport:
    """Members created, members updated, and the rows rejected (in line order)."""

    created: int
    updated: int
    rejected: tuple[Rejected, ...]


class ImportFileError(ValueError):
    """The whole file is unusable: not CSV text, no header, or a required column missing."""


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    channel: str
    external_id: str
    name: str | None
    first_seen: datetime | None
    last_active: datetime | None
    profile: dict[str, Any]  # only the profile columns the file has

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.external_id)


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
    records = _records(_decode(data))
    parser = _RowParser(_header(records), now=now, tz=tz)
    rejected: list[Rejected] = []
    created = updated = 0
    batch: list[_Row] = []
    for line, cells in records:
        try:
            batch.append(parser.parse(line, cells))
        except ValueError as err:
            rejected.append(Rejected(line, str(err)))
            continue
        if len(batch) >= batch_size:
            new, old = await _write_batch(engine, batch, parser.present, now)
            created, updated, batch = created + new, updated + old, []
    if batch:
        new, old = await _write_batch(engine, batch, parser.present, now)
        created, updated = created + new, updated + old
    return ImportReport(created, updated, tuple(rejected))


# --- reading the file ---------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ImportFileError("this is an Excel workbook, not CSV: save it as CSV (UTF-8) first")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFileError("the file is neither UTF-8 nor GB18030 text: save it as CSV (UTF-8)")


def _records(text: str) -> Iterator[tuple[int, list[str] | str]]:
    """``(first line, cells)`` per record, or ``(line, error)`` for one the csv module refused.

    Blank records (no cell with text) are skipped: spreadsheets leave them behind.
    """
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield start, f"unreadable CSV ({err})"
            continue
        if any(cell.strip() for cell in cells):
            yield start, cells


def _header(records: Iterator[tuple[int, list[str] | str]]) -> tuple[dict[str, int], int]:
    """Canonical column → index, and the number of columns, from the first record."""
    first = next(records, None)
    if first is None:
        raise ImportFileError("the file is empty: a header row is required")
    cells = first[1]
    if isinstance(cells, str) or any("\x00" in cell for cell in cells):
        raise ImportFileError("the first line is not a CSV header (binary or unreadable content)")
    if len(cells) > MAX_FIELDS:
        raise ImportFileError(f"the header has {len(cells)} columns; at most {MAX_FIELDS}")
    index: dict[str, int] = {}
    for position, raw in enumerate(cells):
        name = _canonical(raw)
        if name is None:
            continue
        if name in index:
            raise ImportFileError(f"two columns mean {name}: {cells[index[name]]!r} and {raw!r}")
        index[name] = position
    missing = [name for name in REQUIRED if name not in index]
    if missing:
        raise ImportFileError(
            f"missing required column(s) {', '.join(missing)}; the header is {cells!r}"
        )
    return index, len(cells)


def _canonical(raw: str) -> str | None:
    name = re.sub(r"[\s\-]+", "_", raw.strip().lstrip("\ufeff").casefold())
    if name in COLUMNS:
        return name
    return HEADER_ALIASES.get(name)


class _RowParser:
    """Turns one record into a :class:`_Row`, or raises ValueError with the reason."""

    def __init__(self, header: tuple[dict[str, int], int], *, now: datetime, tz: ZoneInfo) -> None:
        self._index, self._width = header
        self._now = now
        self._tz = tz
        self._seen: dict[tuple[str, str], int] = {}
        self.present = frozenset(name for name in PROFILE_COLUMNS if name in self._index)

    def parse(self, line: int, cells: list[str] | str) -> _Row:
        if isinstance(cells, str):
            raise ValueError(cells)
        self._check_shape(cells)
        cell = {name: cells[i].strip() if i < len(cells) else "" for name, i in self._index.items()}
        row = _Row(
            line=line,
            channel=_channel(cell["channel"]),
            external_id=_external_id(cell["external_id"]),
            name=_text("name", cell.get("name", "")) or None,
            first_seen=self._when("first_seen", cell.get("first_seen", "")),
            last_active=self._when("last_active", cell.get("last_active", "")),
            profile={name: self._profile_value(name, cell[name]) for name in self.present},
        )
        if row.first_seen and row.last_active and row.first_seen > row.last_active:
            raise ValueError(
                f"first_seen {cell['first_seen']!r} is after last_active {cell['last_active']!r}"
            )
        if (earlier := self._seen.get(row.key)) is not None:
            raise ValueError(f"duplicate of line {earlier}")
        self._seen[row.key] = line
        return row

    def _check_shape(self, cells: list[str]) -> None:
        if any("\x00" in cell for cell in cells):
            raise ValueError("contains a NUL byte")
        if len(cells) > MAX_FIELDS:
            raise ValueError(f"{len(cells)} fields; at most {MAX_FIELDS}")
        # Non-empty cells past the header's last column usually mean an unquoted comma; empty
        # ones are a trailing comma some tools add.
        if any(cell.strip() for cell in cells[self._width :]):
            raise ValueError(f"{len(cells)} fields but the header has {self._width}")

    def _profile_value(self, name: str, raw: str) -> Any:
        if name in _LIST_COLUMNS:
            return _split(raw)
        if name == "consent":
            return _consent(raw)
        if name == "consent_at":
            return self._when(name, raw)
        return _text(name, raw) or None

    def _when(self, name: str, raw: str) -> datetime | None:
        if not raw:
            return None
        value = _parse_when(raw, self._tz)
        if value is None:
            raise ValueError(f"{name} {raw!r} is not a date (use 2026-06-01 or 2026-06-01 10:00)")
        if value > self._now + _FUTURE_SLACK:
            raise ValueError(f"{name} {raw!r} is in the future")
        return value


def _channel(raw: str) -> str:
    if not _CHANNEL.fullmatch(raw):
        raise ValueError(f"channel {raw!r} is not 1–64 characters of a-z, 0-9, '.', '_', '-'")
    return raw


def _external_id(raw: str) -> str:
    if not raw:
        raise ValueError("external_id is empty")
    if len(raw) > 255:
        raise ValueError(f"external_id is {len(raw)} characters; at most 255")
    if _EXCEL_NUMBER.fullmatch(raw):
        raise ValueError(
            f"external_id {raw!r} is a number Excel rounded: format the column as text"
        )
    return raw


def _text(name: str, raw: str) -> str:
    limit = _TEXT_LIMITS[name]
    if len(raw) > limit:
        raise ValueError(f"{name} is {len(raw)} characters; at most {limit}")
    return raw


def _split(raw: str) -> list[str]:
    """The items of a list cell, trimmed, de-duplicated, in their order."""
    items = (item.strip() for item in _LIST_SPLIT.split(raw))
    return list(dict.fromkeys(item for item in items if item))


def _consent(raw: str) -> bool:
    value = raw.casefold()
    if not value or value in _YES:
        return True
    if value in _NO:
        return False
    raise ValueError(f"consent {raw!r} is not yes/no")


def _parse_when(raw: str, tz: ZoneInfo) -> datetime | None:
    """An ISO-ish date or datetime; naive values are local to ``tz``. None if unparseable."""
    match = _WHEN.fullmatch(raw)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        naive = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0),
            int(second or 0), int((fraction or "0").ljust(6, "0")),
        )  # fmt: skip
    except ValueError:
        return None
    return naive.replace(tzinfo=_zone(offset, tz))


def _zone(offset: str | None, tz: ZoneInfo) -> ZoneInfo | timezone:
    if offset is None:
        return tz
    if offset.upper() == "Z":
        return UTC
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-delta if offset[0] == "-" else delta)


# --- writing ------------------------------------------------------------------------------------


def dialect_insert(conn: AsyncConnection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` with ``ON CONFLICT`` support for the connection's backend."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"Siyu supports SQLite and PostgreSQL, not {name}")


async def plan_each_statement(conn: AsyncConnection) -> None:
    """On PostgreSQL, plan this transaction's statements for their actual parameters.

    asyncpg prepares statements; after five runs PostgreSQL may switch a bulk ``IN (...)``
    look-up to a generic plan that scans the whole (just grown, never analysed) table on every
    batch: 50x slower in our 100k-row import. Planning each batch's statements anew is cheap.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))


async def _write_batch(
    engine: AsyncEngine, rows: Sequence[_Row], present: frozenset[str], now: datetime
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
    conn: AsyncConnection, rows: Sequence[_Row], now: datetime
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
    statement = (
        dialect_insert(conn, MEMBER)
        .on_conflict_do_nothing(index_elements=["channel", "external_id"])
        .returning(MEMBER.c.id, MEMBER.c.channel, MEMBER.c.external_id)
    )
    result = await conn.execute(statement, values)
    return {(channel, ext): mid for mid, channel, ext in result.all()}


async def _update_members(conn: AsyncConnection, rows: Sequence[_Row]) -> None:
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
    rows: Sequence[_Row],
    ids: Mapping[tuple[str, str], int],
    present: frozenset[str],
    now: datetime,
) -> None:
    values = [profile_row(ids[row.key], now, **row.profile) for row in rows]
    insert = dialect_insert(conn, PROFILE)
    replaced = [*sorted(present), "updated_at"]
    statement = insert.on_conflict_do_update(
        index_elements=["member_id"], set_={name: insert.excluded[name] for name in replaced}
    )
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
