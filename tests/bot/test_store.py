"""Members and the message log on real SQLite, and on real PostgreSQL when
``SIYU_TEST_POSTGRES_URL`` is set (each test in a schema of its own, dropped afterwards)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.answer import Turn
from bot.store import Store
from bot.types import MemberRef
from knowledge.types import Citation
from tests.sql import BACKENDS, sql_engine

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[AsyncEngine]:
    async with sql_engine(request.param, data_dir) as engine:
        yield engine


@pytest.fixture
def store(engine: AsyncEngine) -> Store:
    return Store(engine)


async def test_upsert_creates_then_moves_last_active(store: Store) -> None:
    ref = MemberRef("web", "u1", "小明")
    first = await store.upsert_member(ref, T0)
    assert first.id is not None
    assert (first.first_seen, first.last_active) == (T0, T0)
    later = await store.upsert_member(MemberRef("web", "u1"), T0 + timedelta(hours=1))
    assert later.id == first.id
    assert later.first_seen == T0
    assert later.last_active == T0 + timedelta(hours=1)
    assert later.display_name == "小明"  # an empty name does not erase the stored one
    earlier = await store.upsert_member(MemberRef("web", "u1", "小明明"), T0)
    assert earlier.last_active == T0 + timedelta(hours=1)  # never moves backwards
    assert earlier.display_name == "小明明"


async def test_datetimes_read_back_aware_utc(store: Store) -> None:
    shanghai = timezone(timedelta(hours=8))
    await store.upsert_member(MemberRef("web", "u2"), datetime(2026, 6, 1, 18, 0, tzinfo=shanghai))
    member = await store.get_member("web", "u2")
    assert member is not None
    assert member.first_seen.tzinfo is not None
    assert member.first_seen == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.upsert_member(MemberRef("web", "u3"), datetime(2026, 6, 1, 10, 0))


async def test_concurrent_first_contact_creates_one_member(store: Store) -> None:
    ref = MemberRef("web", "u4")
    members = await asyncio.gather(*(store.upsert_member(ref, T0) for _ in range(4)))
    assert len({m.id for m in members}) == 1


async def test_flags_flip_once(store: Store) -> None:
    member = await store.upsert_member(MemberRef("web", "u5"), T0)
    assert await store.set_opted_out(member, True, T0)
    assert not await store.set_opted_out(member, True, T0)
    assert await store.set_opted_out(member, False, T0 + timedelta(days=1))
    assert await store.start_handoff(member, T0)
    assert not await store.start_handoff(member, T0)
    assert await store.end_handoff(member)
    assert not await store.end_handoff(member)
    stored = await store.get_member("web", "u5")
    assert stored is not None
    assert (stored.opted_out, stored.handoff) == (False, False)
    assert stored.opted_out_at == T0
    assert stored.opted_in_at == T0 + timedelta(days=1)
    assert stored.handoff_at == T0


async def test_exchange_log_and_recent_turns(store: Store) -> None:
    member = await store.upsert_member(MemberRef("web", "u6"), T0)
    citation = Citation("faq.md", "faq.md", "会员日", 1, "faq.md#1")
    await store.log_exchange("web:c6", member, "旧问题", T0 - timedelta(hours=2), reply="旧回答")
    await store.log_exchange(
        "web:c6", member, "会员日是哪天", T0,
        reply="每月8号。", answered_by="extractive", citations=[citation],
    )  # fmt: skip
    await store.log_exchange("web:c6", member, "在吗", T0 + timedelta(minutes=1))  # no reply
    turns = await store.recent_turns("web:c6", limit=10, since=T0 - timedelta(minutes=30))
    assert turns == [Turn("user", "会员日是哪天"), Turn("bot", "每月8号。"), Turn("user", "在吗")]
    assert await store.recent_turns("web:c6", limit=2, since=T0 - timedelta(days=1)) == [
        Turn("bot", "每月8号。"),
        Turn("user", "在吗"),
    ]
    assert await store.recent_turns("web:c6", limit=0, since=T0) == []
    log = await store.session_log("web:c6")
    bot_row = log[3]
    assert (bot_row.role, bot_row.answered_by) == ("bot", "extractive")
    assert bot_row.citations == [
        {"doc_id": "faq.md", "source": "faq.md", "title": "会员日", "version": 1,
         "chunk_id": "faq.md#1"}
    ]  # fmt: skip
    assert bot_row.created_at == T0
