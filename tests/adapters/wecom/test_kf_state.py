"""The kf channel's durable state over real SQLite: cursors and the 48 h / 5-reply windows; and
the reading of ``msg_list`` entries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.wecom.kf_messages import BadKfMessage, parse_kf_message, reply_msgid
from adapters.wecom.kf_state import (
    REPLIES_PER_MESSAGE,
    WINDOW,
    KfState,
    WindowKey,
)
from tests.sql import migrated

T0 = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)
KEY = WindowKey("shop", "wkfake", "wm-1")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await migrated(f"sqlite+aiosqlite:///{tmp_path / 'kf.db'}")
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_cursor_is_saved_per_account_and_kf_id(engine: AsyncEngine) -> None:
    state = KfState(engine)
    assert await state.cursor("shop", "wkfake") is None
    await state.save_cursor("shop", "wkfake", "c1", T0)
    await state.save_cursor("shop", "wkfake", "c2", T0)
    await state.save_cursor("other", "wkfake", "x9", T0)
    assert await state.cursor("shop", "wkfake") == "c2"
    assert await KfState(engine).cursor("other", "wkfake") == "x9"  # durable, not in memory


async def test_five_replies_per_customer_message(engine: AsyncEngine) -> None:
    state = KfState(engine)
    assert not await state.claim_reply(KEY, T0)  # the customer never wrote
    await state.customer_wrote(KEY, T0)
    claims = [await state.claim_reply(KEY, T0 + timedelta(minutes=i)) for i in range(7)]
    assert claims == [True] * REPLIES_PER_MESSAGE + [False, False]
    await state.customer_wrote(KEY, T0 + timedelta(hours=1))  # a new message: a new window
    assert await state.claim_reply(KEY, T0 + timedelta(hours=1))


async def test_a_redelivered_older_message_does_not_reopen_the_window(
    engine: AsyncEngine,
) -> None:
    state = KfState(engine)
    await state.customer_wrote(KEY, T0)
    for _ in range(REPLIES_PER_MESSAGE):
        assert await state.claim_reply(KEY, T0)
    await state.customer_wrote(KEY, T0 - timedelta(minutes=5))
    await state.customer_wrote(KEY, T0)
    window = await state.window(KEY)
    assert window is not None
    assert (window.last_customer_at, window.replies) == (T0, REPLIES_PER_MESSAGE)
    assert not await state.claim_reply(KEY, T0)


async def test_the_window_closes_after_48_hours(engine: AsyncEngine) -> None:
    state = KfState(engine)
    await state.customer_wrote(KEY, T0)
    assert await state.claim_reply(KEY, T0 + WINDOW)
    assert not await state.claim_reply(KEY, T0 + WINDOW + timedelta(seconds=1))
    window = await state.window(KEY)
    assert window is not None
    assert window.replies == 1  # a refused claim counts nothing


async def test_close_window_refuses_until_the_customer_writes(engine: AsyncEngine) -> None:
    state = KfState(engine)
    await state.customer_wrote(KEY, T0)
    await state.close_window(KEY)
    assert not await state.claim_reply(KEY, T0)
    await state.customer_wrote(KEY, T0 + timedelta(seconds=1))
    assert await state.claim_reply(KEY, T0 + timedelta(seconds=1))


async def test_concurrent_claims_never_exceed_the_window(engine: AsyncEngine) -> None:
    state = KfState(engine)
    await state.customer_wrote(KEY, T0)
    claims = await asyncio.gather(*(state.claim_reply(KEY, T0) for _ in range(12)))
    assert sum(claims) == REPLIES_PER_MESSAGE


async def test_naive_datetimes_are_refused(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="naive"):
        await KfState(engine).customer_wrote(KEY, datetime(2026, 3, 8, 10, 0))


def test_msg_list_entries_are_read_or_refused_clearly() -> None:
    raw: dict[str, object] = {
        "msgid": "m1", "external_userid": "wm-1", "send_time": 1772000000, "origin": 3,
        "msgtype": "text", "text": {"content": "你好"},
    }  # fmt: skip
    msg = parse_kf_message(raw, open_kfid="wkfake")
    assert (msg.open_kfid, msg.text, msg.is_customer) == ("wkfake", "你好", True)
    assert msg.sent_at == datetime.fromtimestamp(1772000000, UTC)
    assert msg.conversation == "wkfake:wm-1"
    bad_entries: list[object] = [
        [],
        {"send_time": 1},
        {**raw, "send_time": "soon"},
        {**raw, "msgid": 7},
    ]
    for bad in bad_entries:
        with pytest.raises(BadKfMessage):
            parse_kf_message(bad, open_kfid="wkfake")


def test_reply_msgids_are_stable_distinct_and_platform_valid() -> None:
    raw = {"msgid": "x" * 64, "send_time": 0, "msgtype": "text"}
    msg = parse_kf_message(raw, open_kfid="wkfake")
    other = parse_kf_message({**raw, "msgid": "y"}, open_kfid="wkfake")
    ids = {reply_msgid(msg, 0), reply_msgid(msg, 1), reply_msgid(other, 0)}
    assert len(ids) == 3
    assert reply_msgid(msg, 0) == reply_msgid(msg, 0)
    assert all(len(i) <= 32 and i.replace("_", "").isalnum() for i in ids)
