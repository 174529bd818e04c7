"""Interests inferred from what members asked the bot, for segments and per-interest copy.

Decisions:

- **Keywords, not a model.** An interest is a name and a few keywords (:data:`DEFAULT_INTERESTS`,
  replaceable per brand). It is cheap, explainable to an operator ("asked about 奶粉 → 母婴"),
  and good enough to choose which promotion to lead with. Matching is substring and
  case-insensitive (``casefold``), as Chinese has no spaces to split words on.
- **A hit is a message, not a word.** An interest's score is the number of messages that mention
  any of its keywords, so one message repeating 水果 five times, or matching both 酒 and 啤酒,
  counts once. Ties keep the table's order.
- **Refresh merges, never removes.** :func:`refresh_interests` adds newly inferred interests after
  the ones a profile already has (imported or inferred earlier); it never drops one, so a run
  over a short window cannot erase what a longer history showed. An operator resets interests by
  importing the ``interests`` column. Members without a profile get one (person ``"m<id>"``).
  Only ``role="user"`` messages count: the bot's own answers mention every category.
- **Reading is separate from writing.** :func:`inferred_interests` reads the log and returns
  what it finds; a campaign preview uses that in memory and writes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.models import MessageLog, require_aware
from campaigns.members import PROFILE, plan_each_statement, profile_row
from knowledge.sql import upsert

MESSAGES: sa.Table = MessageLog.__table__  # type: ignore[attr-defined]

DEFAULT_INTERESTS: dict[str, tuple[str, ...]] = {
    "生鲜": ("生鲜", "水果", "蔬菜", "肉", "海鲜", "鸡蛋", "车厘子", "榴莲", "草莓"),
    "母婴": ("母婴", "奶粉", "纸尿裤", "尿不湿", "婴儿", "宝宝", "孕妇", "辅食"),
    "酒水饮料": ("酒水", "饮料", "啤酒", "白酒", "红酒", "葡萄酒", "矿泉水", "果汁", "咖啡"),
    "零食": ("零食", "饼干", "薯片", "坚果", "糖果", "巧克力", "辣条"),
    "粮油调味": ("大米", "面粉", "食用油", "花生油", "酱油", "调料", "挂面"),
    "日化": ("日化", "洗发水", "沐浴露", "洗衣液", "牙膏", "纸巾", "卫生纸", "洗洁精"),
    "美妆个护": ("美妆", "化妆品", "口红", "面膜", "护肤", "防晒", "香水"),
    "家电": ("家电", "电视", "冰箱", "洗衣机", "空调", "微波炉", "电饭煲", "吸尘器"),
    "烘焙": ("烘焙", "面包", "蛋糕", "吐司", "甜点", "月饼"),
}
"""Interest → keywords; a brand passes its own table to add categories or words."""

_PAGE = 5000
_WRITE_CHUNK = 1000


def infer_interests(
    texts: Iterable[str],
    table: Mapping[str, Sequence[str]] = DEFAULT_INTERESTS,
    *,
    min_hits: int = 1,
) -> list[str]:
    """The interests mentioned in at least ``min_hits`` of ``texts``, most-hit first."""
    folded = _folded(table)
    hits: Counter[str] = Counter()
    for text in texts:
        hits.update(_mentioned(text, folded))
    return _ranked(hits, table, min_hits)


async def refresh_interests(
    engine: AsyncEngine,
    *,
    since: datetime,
    now: datetime,
    table: Mapping[str, Sequence[str]] = DEFAULT_INTERESTS,
) -> int:
    """Merge the interests of members' messages since ``since`` into their profiles.

    Returns how many members' profiles changed (created, or gained an interest).
    """
    require_aware(now)
    inferred = await inferred_interests(engine, since=since, table=table)
    ids = sorted(inferred)
    updated = 0
    for start in range(0, len(ids), _WRITE_CHUNK):
        chunk = {mid: inferred[mid] for mid in ids[start : start + _WRITE_CHUNK]}
        async with engine.begin() as conn:
            updated += await _merge(conn, chunk, now)
    return updated


async def inferred_interests(
    engine: AsyncEngine,
    *,
    since: datetime,
    table: Mapping[str, Sequence[str]] = DEFAULT_INTERESTS,
) -> dict[int, list[str]]:
    """Member id → the interests of their messages since ``since``, most-hit first (read only)."""
    require_aware(since)
    hits = await _hits_by_member(engine, since, table)
    return {mid: _ranked(counts, table, 1) for mid, counts in hits.items() if counts}


def _folded(table: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(word.casefold() for word in words if word) for name, words in table.items()}


def _mentioned(text: str, folded: Mapping[str, tuple[str, ...]]) -> list[str]:
    text = text.casefold()
    return [name for name, words in folded.items() if any(word in text for word in words)]


def _ranked(hits: Counter[str], table: Mapping[str, Sequence[str]], min_hits: int) -> list[str]:
    order = {name: position for position, name in enumerate(table)}
    kept = [name for name, count in hits.items() if count >= min_hits]
    return sorted(kept, key=lambda name: (-hits[name], order[name]))


async def _hits_by_member(
    engine: AsyncEngine, since: datetime, table: Mapping[str, Sequence[str]]
) -> dict[int, Counter[str]]:
    """Per member, how many of their messages since ``since`` mention each interest."""
    folded = _folded(table)
    hits: dict[int, Counter[str]] = {}
    base = (
        sa.select(MESSAGES.c.id, MESSAGES.c.member_id, MESSAGES.c.text)
        .where(MESSAGES.c.role == "user", MESSAGES.c.created_at >= since)
        .order_by(MESSAGES.c.id)
        .limit(_PAGE)
    )
    after = 0
    while True:
        async with engine.connect() as conn:
            rows = (await conn.execute(base.where(MESSAGES.c.id > after))).all()
        for row in rows:
            hits.setdefault(row.member_id, Counter()).update(_mentioned(row.text, folded))
        if len(rows) < _PAGE:
            return hits
        after = rows[-1].id


async def _merge(conn: AsyncConnection, inferred: Mapping[int, list[str]], now: datetime) -> int:
    await plan_each_statement(conn)
    result = await conn.execute(
        sa.select(PROFILE.c.member_id, PROFILE.c.interests).where(
            PROFILE.c.member_id.in_(list(inferred))
        )
    )
    stored: dict[int, list[str]] = {mid: _strings(value) for mid, value in result.all()}
    changes = []
    for mid, old in stored.items():
        merged = list(dict.fromkeys([*old, *inferred[mid]]))
        if merged != old:
            changes.append({"b_member_id": mid, "b_interests": merged, "b_now": now})
    if changes:
        await conn.execute(
            PROFILE.update()
            .where(PROFILE.c.member_id == sa.bindparam("b_member_id"))
            .values(
                interests=sa.bindparam("b_interests", type_=PROFILE.c.interests.type),
                updated_at=sa.bindparam("b_now", type_=PROFILE.c.updated_at.type),
            ),
            changes,
        )
    return len(changes) + await _create(conn, inferred, set(stored), now)


async def _create(
    conn: AsyncConnection, inferred: Mapping[int, list[str]], existing: set[int], now: datetime
) -> int:
    """Profiles for members that have none yet; how many were created."""
    values = [
        profile_row(mid, now, interests=interests)
        for mid, interests in inferred.items()
        if mid not in existing
    ]
    if not values:
        return 0
    statement = upsert(conn.dialect, PROFILE, ["member_id"])
    result = await conn.execute(statement.returning(PROFILE.c.member_id), values)
    return len(result.all())


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []
