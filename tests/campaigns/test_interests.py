"""Interests: keyword inference, and refresh from real MessageLog rows on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.interests import MESSAGES, infer_interests, refresh_interests
from campaigns.members import PROFILE, profile_row
from tests.campaigns.conftest import T0, add_member

HOUR = timedelta(hours=1)


def test_infer_ranks_by_messages_mentioning_each_interest() -> None:
    texts = [
        "有没有奶粉优惠？",
        "宝宝的纸尿裤还有货吗",
        "车厘子多少钱一斤",
        "水果水果水果",  # one message counts once however often the word repeats
        "门店几点开门？",
        "薯片和奶粉一起买有折扣吗",
    ]
    assert infer_interests(texts) == ["母婴", "生鲜", "零食"]
    assert infer_interests(texts, min_hits=2) == ["母婴", "生鲜"]
    assert infer_interests(["营业时间"]) == []
    assert infer_interests([]) == []


def test_infer_ties_keep_table_order_and_custom_tables_fold_case() -> None:
    table = {"数码": ("iPhone", "耳机"), "宠物": ("猫粮", "狗粮")}
    assert infer_interests(["猫粮有吗", "IPHONE 15 有货吗"], table) == ["数码", "宠物"]
    assert infer_interests(["狗粮", "猫粮", "iphone"], table) == ["宠物", "数码"]


def message(member_id: int, text: str, at: datetime, role: str = "user") -> dict[str, Any]:
    """A message_log row as the core writes it."""
    return {
        "session_key": f"kf:{member_id}", "member_id": member_id, "role": role, "text": text,
        "answered_by": None, "citations": [], "created_at": at,
    }  # fmt: skip


async def log(
    engine: AsyncEngine, member_id: int, text: str, at: datetime, role: str = "user"
) -> None:
    async with engine.begin() as conn:
        await conn.execute(MESSAGES.insert(), [message(member_id, text, at, role)])


async def profiles(engine: AsyncEngine) -> dict[int, tuple[str, list[str], datetime]]:
    query = sa.select(
        PROFILE.c.member_id, PROFILE.c.person, PROFILE.c.interests, PROFILE.c.updated_at
    )
    async with engine.connect() as conn:
        return {
            mid: (person, interests, at) for mid, person, interests, at in await conn.execute(query)
        }


async def test_refresh_merges_user_messages_into_profiles(engine: AsyncEngine) -> None:
    since = T0 - 24 * HOUR
    known = await add_member(engine, "known")
    fresh = await add_member(engine, "fresh")
    quiet = await add_member(engine, "quiet")
    old_only = await add_member(engine, "old")
    async with engine.begin() as conn:
        await conn.execute(
            PROFILE.insert(),
            [profile_row(known, since, person="C1", interests=["家电"]),
             profile_row(quiet, since, person="C2", interests=["烘焙"])],
        )  # fmt: skip
    await log(engine, known, "奶粉什么时候打折", T0 - 2 * HOUR)
    await log(engine, known, "还想问下纸尿裤和薯片", T0 - HOUR)
    await log(engine, known, "有空调吗", T0 - HOUR)  # 家电: already known, kept in place
    await log(engine, fresh, "啤酒有优惠吗", T0 - 3 * HOUR)
    await log(engine, fresh, "我们的蛋糕和水果都很新鲜", T0 - HOUR, role="bot")  # not theirs
    await log(engine, quiet, "营业时间？", T0 - HOUR)  # nothing inferred: untouched
    await log(engine, old_only, "海鲜", since - HOUR)  # before the window

    assert await refresh_interests(engine, since=since, now=T0) == 2
    got = await profiles(engine)
    assert got[known] == ("C1", ["家电", "母婴", "零食"], T0)
    assert got[fresh] == (f"m{fresh}", ["酒水饮料"], T0)
    assert got[quiet] == ("C2", ["烘焙"], since)
    assert old_only not in got

    # Nothing new since: nothing changes, nothing is counted.
    assert await refresh_interests(engine, since=since, now=T0 + HOUR) == 0
    assert (await profiles(engine))[known][2] == T0


async def test_refresh_pages_through_many_messages(engine: AsyncEngine) -> None:
    ids = [await add_member(engine, f"u{i}") for i in range(30)]
    rows = [
        message(ids[i % 30], ("买水果" if i % 2 else "零食") + str(i), T0 - HOUR)
        for i in range(12_000)
    ]
    async with engine.begin() as conn:
        await conn.execute(MESSAGES.insert(), rows)
    assert await refresh_interests(engine, since=T0 - 2 * HOUR, now=T0) == 30
    got = await profiles(engine)
    assert {mid: tuple(got[mid][1]) for mid in ids} == {
        mid: ("生鲜",) if n % 2 else ("零食",) for n, mid in enumerate(ids)
    }
