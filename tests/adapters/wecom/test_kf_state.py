"""The kf channel's durable state over real SQLite and PostgreSQL (sync cursors), and the
reading of ``msg_list`` entries. The reply windows are the core's contact-window ledger
(tests/bot/test_contact.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.wecom.kf_messages import BadKfMessage, parse_kf_message, reply_msgid
from adapters.wecom.kf_state import KfState
from tests.sql import BACKENDS, sql_engine

T0 = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with sql_engine(request.param, tmp_path) as engine:
        yield engine


async def test_cursor_is_saved_per_account_and_kf_id(engine: AsyncEngine) -> None:
    state = KfState(engine)
    assert await state.cursor("shop", "wkfake") is None
    await state.save_cursor("shop", "wkfake", "c1", T0)
    await state.save_cursor("shop", "wkfake", "c2", T0)
    await state.save_cursor("other", "wkfake", "x9", T0)
    assert await state.cursor("shop", "wkfake") == "c2"
    assert await KfState(engine).cursor("other", "wkfake") == "x9"  # durable, not in memory


async def test_open_kfids_are_remembered_before_their_first_page(engine: AsyncEngine) -> None:
    state, other = KfState(engine), KfState(engine)  # two loops (or processes) at once
    assert await state.open_kfids("shop") == []
    await asyncio.gather(state.remember("shop", "wkb", T0), other.remember("shop", "wkb", T0))
    assert await state.cursor("shop", "wkb") == ""  # from the start
    await state.save_cursor("shop", "wka", "c7", T0)
    await state.remember("shop", "wka", T0)  # a saved cursor is kept
    await state.save_cursor("other", "wkc", "x1", T0)
    assert await state.cursor("shop", "wka") == "c7"
    assert await state.open_kfids("shop") == ["wka", "wkb"]


async def test_naive_datetimes_are_refused(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="naive"):
        await KfState(engine).save_cursor("shop", "wkfake", "c1", datetime(2026, 3, 8, 10, 0))


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
