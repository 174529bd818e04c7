"""CSV import of members on real SQLite and PostgreSQL: good rows, every rejection, encodings,
Chinese headers, updates of known members, and a 20,000-row file."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.members import MEMBER, PROFILE, ImportFileError, Rejected, import_members
from campaigns.segments import SegmentRule, select_audience
from tests.campaigns.conftest import T0, add_member

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def run(engine: AsyncEngine, text: str, **kwargs: Any) -> Any:
    return await import_members(engine, text.encode(), now=T0, tz=SHANGHAI, **kwargs)


async def members(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Every member with its profile, by external_id."""
    joined = MEMBER.outerjoin(PROFILE, PROFILE.c.member_id == MEMBER.c.id)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(MEMBER, PROFILE).select_from(joined))).mappings()
        return {row["external_id"]: dict(row) for row in rows}


async def test_good_rows_create_members_and_profiles(engine: AsyncEngine) -> None:
    text = (
        "Channel,External_ID,name,person,home_store,tags,interests,owner_userid,"
        "external_userid,groups,consent,consent_at,first_seen,last_active,notes\n"
        "kf.main,u1,小王,C001,SH01,vip; 新客|vip，老客,零食、烘焙,zhang,wm_1,g1,是,"
        "2026-05-01,2026/5/1,2026-06-01 10:00,ignored\n"
        "oa.main,o1,,,,,,,,,,,,\n"
    )
    report = await run(engine, text)
    assert (report.created, report.updated, report.rejected) == (2, 0, ())
    got = await members(engine)
    one = got["u1"]
    assert one["channel"] == "kf.main"
    assert one["display_name"] == "小王"
    assert one["person"] == "C001"
    assert one["home_store"] == "SH01"
    assert one["tags"] == ["vip", "新客", "老客"]  # split on ; | ，, trimmed, de-duplicated
    assert one["interests"] == ["零食", "烘焙"]
    assert (one["owner_userid"], one["external_userid"], one["groups"]) == ("zhang", "wm_1", ["g1"])
    assert one["consent"] is True
    # Naive values are Shanghai time: 10:00 local is 02:00 UTC.
    assert one["last_active"] == datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    assert one["first_seen"] == datetime(2026, 4, 30, 16, 0, tzinfo=UTC)
    assert one["consent_at"] == datetime(2026, 4, 30, 16, 0, tzinfo=UTC)
    assert one["updated_at"] == T0
    bare = got["o1"]
    assert bare["person"] == f"m{bare['id']}"  # empty person: the member's own key
    assert (bare["first_seen"], bare["last_active"]) == (T0, T0)  # empty dates: now
    assert (bare["tags"], bare["consent"], bare["home_store"]) == ([], True, None)


async def test_aware_dates_keep_their_offset(engine: AsyncEngine) -> None:
    text = "channel,external_id,last_active\nkf.main,u1,2026-06-01T10:00:00+00:00\n"
    await run(engine, text)
    assert (await members(engine))["u1"]["last_active"] == datetime(2026, 6, 1, 10, tzinfo=UTC)


async def test_every_rejection_reason_and_good_rows_survive(engine: AsyncEngine) -> None:
    lines = [
        "channel,external_id,person,consent,first_seen,last_active",
        "kf.main,ok1,,,,",  # 2: good
        "KF.main,u3,,,,",  # 3
        ",u4,,,,",  # 4
        "kf.main,,,,,",  # 5
        "kf.main," + "x" * 256 + ",,,,",  # 6
        "kf.main,u7,,maybe,,",  # 7
        "kf.main,u8,,,,yesterday",  # 8
        "kf.main,u9,,,,2026-06-12",  # 9: more than a day ahead of now
        "kf.main,u10,,,2026-06-05,2026-06-01",  # 10
        "kf.main,1.23457E+17,,,,",  # 11
        "kf.main,u12,bad\x00value,,,",  # 12
        "kf.main,u13,,,,," + ",".join(["x"] * 60),  # 13: 66 fields
        "kf.main,u14,,,,,surplus",  # 14
        "kf.main,u15," + "p" * 129 + ",,,",  # 15
        "kf.main,ok1,,,,",  # 16: duplicate of line 2
        "kf.main,ok2,,,,2026-06-11 09:00",  # 17: good (within a day ahead)
        "kf.main,u18,,,2026-02-30,",  # 18
    ]
    report = await run(engine, "\n".join(lines) + "\n")
    reasons = {r.line: r.reason for r in report.rejected}
    assert reasons == {
        3: "channel 'KF.main' is not 1–64 characters of a-z, 0-9, '.', '_', '-'",
        4: "channel '' is not 1–64 characters of a-z, 0-9, '.', '_', '-'",
        5: "external_id is empty",
        6: "external_id is 256 characters; at most 255",
        7: "consent 'maybe' is not yes/no",
        8: "last_active 'yesterday' is not a date (use 2026-06-01 or 2026-06-01 10:00)",
        9: "last_active '2026-06-12' is in the future",
        10: "first_seen '2026-06-05' is after last_active '2026-06-01'",
        11: "external_id '1.23457E+17' is a number Excel rounded: format the column as text",
        12: "contains a NUL byte",
        13: "66 fields; at most 64",
        14: "7 fields but the header has 6",
        15: "person is 129 characters; at most 128",
        16: "duplicate of line 2",
        18: "first_seen '2026-02-30' is not a date (use 2026-06-01 or 2026-06-01 10:00)",
    }
    assert str(Rejected(7, reasons[7])) == "line 7: consent 'maybe' is not yes/no"
    assert (report.created, report.updated) == (2, 0)
    assert set(await members(engine)) == {"ok1", "ok2"}


async def test_line_numbers_follow_multiline_cells_and_skip_blank_rows(
    engine: AsyncEngine,
) -> None:
    text = 'channel,external_id,name\nkf.main,u1,"two\nlines"\n\n,,\nkf.main,u2,\nbad!,u3,\n'
    report = await run(engine, text)
    assert [(r.line, r.reason.split()[0]) for r in report.rejected] == [(7, "channel")]
    assert (await members(engine))["u1"]["display_name"] == "two\nlines"


async def test_a_record_the_csv_reader_refuses_is_rejected_alone(engine: AsyncEngine) -> None:
    huge = "x" * (csv.field_size_limit() + 1)
    text = f"channel,external_id,name\nkf.main,u1,{huge}\nkf.main,u2,ok\n"
    report = await run(engine, text)
    assert [
        (r.line, r.reason.startswith("unreadable CSV (field larger")) for r in report.rejected
    ] == [(2, True)]
    assert list(await members(engine)) == ["u2"]


async def test_gb18030_file_with_chinese_headers(engine: AsyncEngine) -> None:
    text = (
        "渠道,用户ID,姓名,门店,标签,营销同意,最近活跃\r\n"
        "kf.main,u1,李雷,北京朝阳店,会员、母婴,否,2026/6/1\r\n"
    )
    data = text.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    report = await import_members(engine, data, now=T0, tz=SHANGHAI)
    assert (report.created, report.rejected) == (1, ())
    one = (await members(engine))["u1"]
    assert (one["display_name"], one["home_store"]) == ("李雷", "北京朝阳店")
    assert (one["tags"], one["consent"]) == (["会员", "母婴"], False)
    assert one["last_active"] == datetime(2026, 5, 31, 16, 0, tzinfo=UTC)


async def test_utf8_bom_and_tab_separated(engine: AsyncEngine) -> None:
    data = "\ufeffchannel\texternal_id\ttags\nkf.main\tu1\ta,b\n".encode()
    report = await import_members(engine, data, now=T0, tz=SHANGHAI)
    assert (report.created, report.rejected) == (1, ())
    assert (await members(engine))["u1"]["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"name,tags\nx,y\n", r"missing required column\(s\) channel, external_id"),
        (b"channel,id\nkf.main,1\n", r"missing required column\(s\) external_id"),
        ("channel,external_id,tags,标签\n".encode(), "two columns mean tags"),
        ("channel,external_id\n".encode("utf-16"), "neither UTF-8 nor GB18030"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
        (b"channel,external_id\x00\nkf.main,u1\n", "not a CSV header"),
        (",".join(f"c{i}" for i in range(65)).encode(), "65 columns"),
    ],
)
async def test_unusable_files_raise(engine: AsyncEngine, data: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        await import_members(engine, data, now=T0, tz=SHANGHAI)
    assert await members(engine) == {}


async def test_existing_member_dates_move_one_way_and_profile_columns_replace(
    engine: AsyncEngine,
) -> None:
    known = T0 - timedelta(days=3)
    mid = await add_member(engine, "u1", last_active=known, first_seen=known)
    await add_member(engine, "u2", last_active=known, first_seen=known)
    await run(engine, "channel,external_id,home_store,tags\nkf.main,u2,SH01,a\n")
    text = (
        "channel,external_id,name,tags,first_seen,last_active\n"
        "kf.main,u1,新名字,b;c,2026-01-01,2026-06-01\n"  # older last_active: kept; older first_seen
        "kf.main,u2,,,,\n"  # empty name and dates: untouched; tags cleared; store kept
        "kf.main,u3,,,,\n"
    )
    report = await run(engine, text)
    assert (report.created, report.updated, report.rejected) == (1, 2, ())
    got = await members(engine)
    one = got["u1"]
    assert one["last_active"] == known  # never moved backward
    assert one["first_seen"] == datetime(2025, 12, 31, 16, 0, tzinfo=UTC)  # moved backward
    assert one["display_name"] == "新名字"
    assert (one["tags"], one["person"]) == (["b", "c"], f"m{mid}")
    two = got["u2"]
    assert (two["last_active"], two["first_seen"], two["display_name"]) == (known, known, "")
    assert (two["tags"], two["home_store"]) == ([], "SH01")  # absent column keeps its value

    await run(engine, f"channel,external_id,last_active\nkf.main,u1,{T0.date()} 09:00\n")
    assert (await members(engine))["u1"]["last_active"] == T0 - timedelta(hours=1)  # forward


async def test_consent_false_is_excluded_from_audiences_but_not_opted_out(
    engine: AsyncEngine,
) -> None:
    text = "channel,external_id,consent\nkf.main,yes1,y\nkf.main,no1,拒绝\nkf.main,no2,0\n"
    report = await run(engine, text)
    assert report.created == 3
    got = await members(engine)
    assert not any(row["opted_out"] for row in got.values())
    everyone = SegmentRule("all")
    batches = [b async for b in select_audience(engine, everyone, now=T0)]
    assert [a.external_id for batch in batches for a in batch] == ["yes1"]
    rule = SegmentRule("all", consenting_only=False)
    batches = [b async for b in select_audience(engine, rule, now=T0)]
    assert sorted(a.external_id for batch in batches for a in batch) == ["no1", "no2", "yes1"]


async def test_duplicates_are_found_across_batches(engine: AsyncEngine) -> None:
    rows = [f"kf.main,u{i}" for i in range(7)] + ["kf.main,u1", "oa.main,u1"]
    report = await run(engine, "channel,external_id\n" + "\n".join(rows) + "\n", batch_size=3)
    assert (report.created, report.updated) == (8, 0)
    assert report.rejected == (Rejected(9, "duplicate of line 3"),)


async def test_twenty_thousand_rows_import_completely(engine: AsyncEngine) -> None:
    header = "channel,external_id,name,person,home_store,tags,last_active\n"
    body = "".join(
        f"kf.main,u{i},会员{i},P{i // 2},S{i % 7},vip;t{i % 3},2026-05-{1 + i % 28:02d}\n"
        for i in range(20_000)
    )
    data = (header + body).encode()
    first = await import_members(engine, data, now=T0, tz=SHANGHAI)
    assert (first.created, first.updated, first.rejected) == (20_000, 0, ())
    again = await import_members(engine, data, now=T0, tz=SHANGHAI, batch_size=7000)
    assert (again.created, again.updated, again.rejected) == (0, 20_000, ())
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(MEMBER))).scalar()
        persons = (
            await conn.execute(sa.select(sa.func.count(sa.distinct(PROFILE.c.person))))
        ).scalar()
        sample = (
            await conn.execute(
                sa.select(PROFILE.c.person, PROFILE.c.home_store, PROFILE.c.tags)
                .select_from(MEMBER.join(PROFILE, PROFILE.c.member_id == MEMBER.c.id))
                .where(MEMBER.c.external_id == "u19999")
            )
        ).one()
    assert (count, persons) == (20_000, 10_000)
    assert tuple(sample) == ("P9999", "S0", ["vip", "t1"])


async def test_batch_size_must_be_positive(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await run(engine, "channel,external_id\nkf.main,u1\n", batch_size=0)
