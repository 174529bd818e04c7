"""Reading a members CSV (``siyu members import``): the file, its header, and each row checked.

A file that cannot be read as CSV at all (an Excel workbook, an encoding other than UTF-8 /
GB18030, no header, a required column missing, two columns meaning the same thing) raises
:class:`ImportFileError` before anything is written. After that every row stands alone: a bad
one becomes a :class:`Rejected` with its line and a precise reason. All checks happen here, in
Python, so the writer (:mod:`campaigns.members`) never sends PostgreSQL a value it would refuse.
Encodings, header aliases and line numbers: see :mod:`campaigns.members`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from knowledge.errors import MetadataError
from knowledge.metadata import parse_datetime

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
_CHANNEL = re.compile(r"[a-z0-9._-]{1,64}")
_EXCEL_NUMBER = re.compile(r"\d(?:\.\d+)?[eE]\+\d+")
_LIST_SPLIT = re.compile(r"[;|，、,；]")
_YES = frozenset({"1", "true", "yes", "y", "是", "同意"})
_NO = frozenset({"0", "false", "no", "n", "否", "拒绝"})
_FUTURE_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class Rejected:
    """A row left out of the import: its 1-based CSV line and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ImportFileError(ValueError):
    """The whole file is unusable: not CSV text, no header, or a required column missing."""


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One good row: the member's identity, dates, and the profile columns the file has."""

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


def read_rows(
    data: bytes, *, now: datetime, tz: ZoneInfo
) -> tuple[frozenset[str], Iterator[MemberRow | Rejected]]:
    """The profile columns the file has, and its rows in order (each checked, or rejected).

    Raises :class:`ImportFileError` at once when the file as a whole is unusable.
    """
    records = _records(_decode(data))
    parser = _RowParser(_header(records), now=now, tz=tz)

    def rows() -> Iterator[MemberRow | Rejected]:
        for line, cells in records:
            try:
                yield parser.parse(line, cells)
            except ValueError as err:
                yield Rejected(line, str(err))

    return parser.present, rows()


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
    """Turns one record into a :class:`MemberRow`, or raises ValueError with the reason."""

    def __init__(self, header: tuple[dict[str, int], int], *, now: datetime, tz: ZoneInfo) -> None:
        self._index, self._width = header
        self._now = now
        self._tz = tz
        self._seen: dict[tuple[str, str], int] = {}
        self.present = frozenset(name for name in PROFILE_COLUMNS if name in self._index)

    def parse(self, line: int, cells: list[str] | str) -> MemberRow:
        if isinstance(cells, str):
            raise ValueError(cells)
        self._check_shape(cells)
        cell = {name: cells[i].strip() if i < len(cells) else "" for name, i in self._index.items()}
        row = MemberRow(
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
        try:
            value = parse_datetime(raw, self._tz)
        except MetadataError as exc:
            raise ValueError(
                f"{name} {raw!r} is not a date (use 2026-06-01 or 2026-06-01 10:00)"
            ) from exc
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
