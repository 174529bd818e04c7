"""The contact-window ledger on real SQLite and PostgreSQL: opening, consuming, the 48-hour
boundary, closing, pruning, the members' latest addresses, and many concurrent consumers on
separate engines (as separate processes would be) never overspending a window."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.contact import SENDS_PER_WINDOW, WINDOW, ContactLedger
from bot.store import Store
from bot.types import Address, MemberRef
from tests.sql import BACKENDS, sql_engine, twin_engine

T0 = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)
KF = Address("kf", "shop", "wm-1", chat="wkfake")
OA = Address("oa", "brand", "o-1")


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[AsyncEngine]:
    async with sql_engine(request.param, data_dir) as engine:
        yield engine


async def test_a_window_allows_five_sends_after_the_last_message(engine: AsyncEngine) -> None:
    ledger = ContactLedger(engine)
    assert not await ledger.consume(KF, 1, T0)  # the member never wrote
    await ledger.open(KF, T0)
    assert await ledger.remaining(KF, T0) == SENDS_PER_WINDOW
    assert await ledger.consume(KF, 3, T0)
    assert not await ledger.consume(KF, 3, T0)  # all or nothing: 2 are left
    assert await ledger.remaining(KF, T0) == 2
    assert [await ledger.consume(KF, 1, T0) for _ in range(3)] == [True, True, False]
    await ledger.open(KF, T0 + timedelta(hours=1))  # a new message: a new window
    assert await ledger.remaining(KF, T0 + timedelta(hours=1)) == SENDS_PER_WINDOW


async def test_windows_are_per_address(engine: AsyncEngine) -> None:
    ledger = ContactLedger(engine)
    await ledger.open(KF, T0)
    assert await ledger.consume(KF, SENDS_PER_WINDOW, T0)
    other_chat = Address("kf", "shop", "wm-1", chat="wkother")
    assert await ledger.remaining(other_chat, T0) == 0  # that chat never had a message
    await ledger.open(OA, T0)
    assert await ledger.consume(OA, 1, T0)


async def test_the_window_closes_48_hours_after_the_message(engine: AsyncEngine) -> None:
    ledger = ContactLedger(engine)
    await ledger.open(OA, T0)
    just_before = T0 + WINDOW - timedelta(seconds=1)
    assert await ledger.consume(OA, 1, just_before)
    assert await ledger.remaining(OA, T0 + WINDOW) == 0
    assert not await ledger.consume(OA, 1, T0 + WINDOW)


async def test_an_older_message_redelivered_does_not_refill_the_window(
    engine: AsyncEngine,
) -> None:
    ledger = ContactLedger(engine)
    await ledger.open(KF, T0)
    assert await ledger.consume(KF, SENDS_PER_WINDOW, T0)
    await ledger.open(KF, T0)  # the same message re-read after a crash
    await ledger.open(KF, T0 - timedelta(minutes=5))  # an older one, out of order
    assert await ledger.remaining(KF, T0) == 0


async def test_close_uses_the_window_up_until_the_member_writes(engine: AsyncEngine) -> None:
    ledger = ContactLedger(engine)
    await ledger.open(KF, T0)
    await ledger.close(KF)
    assert not await ledger.consume(KF, 1, T0)
    await ledger.open(KF, T0 + timedelta(seconds=1))
    assert await ledger.consume(KF, 1, T0 + timedelta(seconds=1))


async def test_routes_without_a_window_are_not_metered(engine: AsyncEngine) -> None:
    ledger = ContactLedger(engine)
    web = Address("web", "chat", "visitor-1")
    await ledger.open(web, T0)
    assert all([await ledger.consume(web, 1, T0) for _ in range(SENDS_PER_WINDOW + 1)])
    with pytest.raises(ValueError, match="at least one"):
        await ledger.consume(KF, 0, T0)
    with pytest.raises(ValueError, match="naive"):
        await ledger.open(KF, datetime(2026, 6, 10, 2, 0))


async def test_prune_deletes_only_closed_windows(engine: AsyncEngine) -> None:
    ledger = ContactLedger(engine)
    await ledger.open(KF, T0)
    await ledger.open(OA, T0 + timedelta(hours=1))
    assert await ledger.prune(T0 + WINDOW) == 1  # KF closed at T0 + 48 h; OA is still open
    assert await ledger.remaining(OA, T0 + WINDOW) == SENDS_PER_WINDOW
    assert await ledger.remaining(KF, T0) == 0  # pruned reads as closed: never a send


async def test_members_latest_address_and_what_it_allows(engine: AsyncEngine) -> None:
    store = Store(engine)
    member = await store.upsert_member(MemberRef("kf.shop", "wm-1"), T0)
    web = await store.upsert_member(MemberRef("web", "visitor"), T0)
    assert member.id is not None
    assert web.id is not None
    ledger = store.contacts
    await ledger.arrived(member.id, KF, T0)
    await ledger.arrived(web.id, Address("web", "chat", "visitor"), T0)
    moved = Address("kf", "shop", "wm-1", chat="wknew")
    await ledger.arrived(member.id, moved, T0 + timedelta(hours=1))
    await ledger.arrived(member.id, KF, T0 + timedelta(minutes=5))  # older: not the latest
    assert await ledger.consume(moved, 2, T0 + timedelta(hours=2))
    reach = await ledger.reach([member.id, web.id], T0 + timedelta(hours=2))
    assert list(reach) == [member.id]  # the web chat has no window to reach anyone through
    mine = reach[member.id]
    assert (mine.address, mine.remaining) == (moved, SENDS_PER_WINDOW - 2)
    assert mine.last_inbound_at == T0 + timedelta(hours=1)
    later = await ledger.reach([member.id], T0 + timedelta(hours=1) + WINDOW)
    assert later[member.id].remaining == 0


@pytest.mark.parametrize("sizes", [(1,), (1, 2)], ids=["single", "mixed"])
async def test_concurrent_consumers_never_overspend(
    engine: AsyncEngine, sizes: tuple[int, ...]
) -> None:
    await ContactLedger(engine).open(KF, T0)
    async with AsyncExitStack() as stack:
        engines = [engine]
        for _ in range(3):
            engines.append(await twin_engine(engine))
            stack.push_async_callback(engines[-1].dispose)
        asks = [(ContactLedger(engines[i % 4]), random.choice(sizes)) for i in range(40)]
        granted = await asyncio.gather(*(ledger.consume(KF, n, T0) for ledger, n in asks))
    used = sum(n for (_, n), ok in zip(asks, granted, strict=True) if ok)
    assert used <= SENDS_PER_WINDOW
    assert await ContactLedger(engine).remaining(KF, T0) == SENDS_PER_WINDOW - used
    if sizes == (1,):
        assert used == SENDS_PER_WINDOW  # demand exceeded supply: every slot went to someone
