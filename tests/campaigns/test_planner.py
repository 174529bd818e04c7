"""Planning runs over a real knowledge base (hash embeddings, Chroma in a temp dir) and real
SQLite / PostgreSQL members; then the run delivered to the fake platform and reported."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.answer import ExtractiveAnswerer
from bot.config import BotConfig
from bot.models import MessageLog
from bot.pipeline import Pipeline
from bot.store import Store
from bot.types import Address, InboundMessage, MemberRef
from campaigns.config import OPT_OUT_HINT, CampaignsConfig
from campaigns.copy import CopyWriter
from campaigns.members import PROFILE, profile_row
from campaigns.models import Campaign, OutboxRow
from campaigns.outbox import Outbox
from campaigns.planner import Planner
from campaigns.registry import create_campaign
from campaigns.reports import reactivation, run_counts
from knowledge.base import KnowledgeBase
from knowledge.types import ChunkDraft, DocumentMeta, Kind
from tests.bot.conftest import PROMOTION_TEXT, document, make_settings, seed
from tests.campaigns.conftest import T0, add_member
from tests.sql import snapshot

LOG = MessageLog.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
STORE_PROMO = "徐汇店限定：6月1日至6月20日，烘焙第二件半价。"


@pytest.fixture
async def knowledge(engine: AsyncEngine, data_dir: Path) -> AsyncIterator[KnowledgeBase]:
    kb = await KnowledgeBase.open(make_settings(data_dir).knowledge.config(data_dir), engine)
    try:
        await seed(kb)  # an FAQ and the all-store June promotion 夏日满减
        meta = DocumentMeta(
            source="xuhui.md", kind=Kind.PROMOTION, title="徐汇烘焙", stores=("s1",),
            valid_from=datetime(2026, 5, 31, 16, 0, tzinfo=UTC),
            valid_to=datetime(2026, 6, 20, 15, 59, tzinfo=UTC),
        )  # fmt: skip
        await kb.ingest(document(meta, ChunkDraft(text=STORE_PROMO)))
        yield kb
    finally:
        await kb.close()


@pytest.fixture
async def planner(engine: AsyncEngine, knowledge: KnowledgeBase) -> AsyncIterator[Planner]:
    copy = CopyWriter(CampaignsConfig(), None, brand="示例咖啡")
    try:
        yield Planner(engine, knowledge, copy, CampaignsConfig())
    finally:
        await copy.aclose()


@dataclass
class Members:
    """Members made as they come: kf and Official Account members by writing to the bot through
    the real pipeline (which records the address they wrote from and opens its window), imported
    ``contact`` members by a direct insert; each with a marketing profile."""

    engine: AsyncEngine
    store: Store
    answerer: ExtractiveAnswerer
    config: BotConfig

    async def wrote(self, address: Address, at: datetime, *, text: str = "你好") -> int:
        """``address``'s member sends ``text`` at ``at``; the member's id."""
        pipeline = Pipeline(self.store, self.answerer, self.config, clock=lambda: at)
        channel = f"{address.route}.{address.account}"  # as the kf / OA adapters name channels
        sender = MemberRef(channel, address.user)
        await pipeline.handle(
            InboundMessage(
                id=uuid.uuid4().hex, channel=channel, conversation=address.user, sender=sender,
                text=text, received_at=at, address=address,
            )
        )  # fmt: skip
        found = await self.store.get_member(channel, address.user)
        assert found is not None
        assert found.id is not None
        return found.id

    async def add(self, external_id: str, *, route: str, idle: timedelta, **profile: Any) -> int:
        """A member last active ``idle`` before T0, first seen 100 days before that."""
        first_seen = T0 - idle - timedelta(days=100)
        if route == "contact":
            member_id = await add_member(
                self.engine, external_id, channel="contact", last_active=T0 - idle,
                first_seen=first_seen,
            )  # fmt: skip
        else:
            chat = "wkMAIN" if route == "kf" else None
            address = Address(route, "main", external_id, chat=chat)
            await self.wrote(address, first_seen)
            member_id = await self.wrote(address, T0 - idle)
        async with self.engine.begin() as conn:
            await conn.execute(PROFILE.insert().values(profile_row(member_id, T0, **profile)))
        return member_id


@pytest.fixture
def members(engine: AsyncEngine, knowledge: KnowledgeBase, data_dir: Path) -> Members:
    config = make_settings(data_dir).bot.config()
    return Members(engine, Store(engine), ExtractiveAnswerer(knowledge), config)


async def campaign(engine: AsyncEngine, name: str, kind: str, **kw: Any) -> Campaign:
    return await create_campaign(engine, name=name, kind=kind, now=T0, **kw)


async def test_daily_deals_reach_the_store_groups_and_open_windows(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    await members.add("u1", route="kf", idle=timedelta(hours=1), home_store="s1")
    await members.add("o1", route="oa", idle=timedelta(hours=30), home_store="s1")
    await members.add("u2", route="kf", idle=timedelta(days=3), home_store="s1")
    await members.add("u3", route="kf", idle=timedelta(hours=1), home_store="s2")
    await members.add("c1", route="contact", idle=timedelta(hours=1), home_store="s1")
    deals = await campaign(
        engine, "deals", "daily_deals", store_id="s1", options={"groups": ["g1"]}
    )

    report = await planner.plan(deals, now=T0, run_key="2026-06-10")

    assert sorted(report.promotions) == ["夏日满减", "徐汇烘焙"]
    assert dict(report.by_route) == {"group": 1, "kf": 1, "oa": 1}
    # u2 wrote 3 days ago; u3 is another store's; c1 was imported and never wrote (no window).
    assert report.not_planned == {"window_closed": 1}
    rows = await Outbox(engine).claim("t", limit=10, now=T0, lease_seconds=60)
    by_route = {r.channel: r for r in rows}
    # The addresses the members wrote from, as the adapters recorded them.
    assert by_route["kf"].address == Address("kf", "main", "u1", chat="wkMAIN").as_fields()
    assert by_route["oa"].address == Address("oa", "main", "o1").as_fields()
    assert by_route["group"].address == {"robot": "g1"}
    text = by_route["kf"].text
    assert PROMOTION_TEXT in text
    assert STORE_PROMO in text
    assert text.endswith(OPT_OUT_HINT)
    # The message is not true after the first promotion ends.
    assert by_route["kf"].expires_at == datetime(2026, 6, 20, 15, 59, tzinfo=UTC)


async def test_a_window_used_up_by_answers_gets_no_daily_deal(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    await members.add("u1", route="kf", idle=timedelta(hours=1), home_store="s1")
    await members.add("u2", route="kf", idle=timedelta(hours=2), home_store="s1")
    # The bot's answers to u2 used up the window since u2's message.
    u2 = Address("kf", "main", "u2", chat="wkMAIN")
    assert await members.store.contacts.consume(u2, 5, T0 - timedelta(hours=1))
    deals = await campaign(engine, "deals", "daily_deals", store_id="s1")
    report = await planner.plan(deals, now=T0, run_key="2026-06-10")
    assert dict(report.by_route) == {"kf": 1}
    assert report.not_planned == {"window_closed": 1}
    (row,) = await Outbox(engine).claim("t", limit=10, now=T0, lease_seconds=60)
    assert row.address["user"] == "u1"


async def test_a_run_is_planned_once(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    await members.add("u1", route="kf", idle=timedelta(hours=1), home_store="s1")
    deals = await campaign(engine, "deals", "daily_deals", store_id="s1")
    first = await planner.plan(deals, now=T0, run_key="2026-06-10")
    again = await planner.plan(deals, now=T0 + timedelta(minutes=5), run_key="2026-06-10")
    assert first.added == 1
    assert again.added == 0
    assert again.run_id == first.run_id
    assert "already planned" in again.notes[0]
    assert await Outbox(engine).pending() == 1


async def test_no_valid_promotion_plans_nothing(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    await members.add("u1", route="kf", idle=timedelta(hours=1), home_store="s1")
    deals = await campaign(engine, "deals", "daily_deals", store_id="s1", options={"groups": ["g"]})
    later = datetime(2026, 8, 1, 2, 0, tzinfo=UTC)  # after every promotion ended
    report = await planner.plan(deals, now=later, run_key="2026-08-01")
    assert report.planned == 0
    assert "no promotion is valid" in report.notes[0]


async def test_preview_writes_nothing(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    await members.add("u1", route="kf", idle=timedelta(hours=1), home_store="s1")
    deals = await campaign(engine, "deals", "daily_deals", store_id="s1")
    before = await snapshot(engine)
    report = await planner.plan(deals, now=T0, run_key="preview", write=False)
    assert report.planned == 1
    assert report.run_id is None
    assert list(report.samples) == ["template:daily_deals"]
    assert await snapshot(engine) == before


async def test_a_reengagement_preview_writes_nothing_yet_uses_fresh_interests(
    engine: AsyncEngine, knowledge: KnowledgeBase, members: Members
) -> None:
    who = await members.add(
        "c1", route="contact", idle=timedelta(days=45), owner_userid="z",
        external_userid="wmA", home_store="s1",
    )  # fmt: skip
    await members.add("c2", route="contact", idle=timedelta(days=45), groups=["g1"])
    async with engine.begin() as conn:  # a question that makes c1 a 烘焙 fan
        await conn.execute(
            LOG.insert().values(
                session_key="x", member_id=who, role="user", text="有没有新鲜的面包？",
                citations=[], created_at=T0 - timedelta(days=45),
            )
        )  # fmt: skip
    winback = await campaign(engine, "winback", "reengage")
    config = CampaignsConfig(templates={"dormant": "{brand}给{interest}爱好者：{promotions}"})
    copy = CopyWriter(config, None, brand="示例咖啡")
    planner = Planner(engine, knowledge, copy, config)
    before = await snapshot(engine)
    preview = await planner.plan(winback, now=T0, run_key="preview", write=False)
    assert await snapshot(engine) == before  # profiles, runs, outbox: all as they were
    assert dict(preview.by_route) == {"staff_task": 1, "group": 1}
    assert any(text.startswith("示例咖啡给烘焙爱好者") for text in preview.samples.values())
    planned = await planner.plan(winback, now=T0, run_key="r1")  # the real plan agrees
    assert (planned.by_route, planned.samples) == (preview.by_route, preview.samples)
    await copy.aclose()


async def test_a_group_gets_a_winback_post_once_per_cooldown(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    await members.add("c2", route="contact", idle=timedelta(days=45), groups=["g1"])
    deals = await campaign(engine, "deals", "daily_deals", options={"groups": ["g1"]})
    await planner.plan(deals, now=T0, run_key="2026-06-10")  # another kind: does not count
    winback = await campaign(engine, "winback", "reengage", options={"cooldown_days": 14})
    first = await planner.plan(winback, now=T0, run_key="r1")
    same_day = await planner.plan(winback, now=T0 + timedelta(hours=2), run_key="r2")
    assert dict(first.by_route) == {"group": 1}
    assert same_day.planned == 0  # still pending from r1: about to be posted
    assert same_day.not_planned == {"group_only": 1, "group_cooldown": 1}
    box = Outbox(engine)
    for row in await box.claim("t", limit=10, now=T0, lease_seconds=60):
        await box.mark_sent(row.id or 0, "t", now=T0 + timedelta(hours=3), platform_id="x")
    week = await planner.plan(winback, now=T0 + timedelta(days=7), run_key="r3")
    later = await planner.plan(winback, now=T0 + timedelta(days=15), run_key="r4")
    assert week.not_planned["group_cooldown"] == 1
    assert dict(later.by_route) == {"group": 1}


async def test_reengagement_routes_dormant_members_honestly(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    dormant = timedelta(days=45)
    staff = await members.add("c1", route="contact", idle=dormant, owner_userid="zhang",
        external_userid="wmA", home_store="s1", interests=["烘焙"],
    )  # fmt: skip
    await members.add("c2", route="contact", idle=dormant, groups=["g1"])
    await members.add("c3", route="contact", idle=dormant)
    await members.add(
        "c4",
        route="contact",
        idle=timedelta(days=120),
        owner_userid="li",
        external_userid="wmD",
    )  # fmt: skip  (lost: not in the default segments)
    await members.add(
        "c5",
        route="contact",
        idle=timedelta(days=20),
        owner_userid="li",
        external_userid="wmE",
    )  # fmt: skip  (at risk)
    await members.add("c6", route="contact", idle=dormant, owner_userid="li",
                 external_userid="wmF", consent=False)  # fmt: skip
    winback = await campaign(engine, "winback", "reengage")

    report = await planner.plan(winback, now=T0, run_key="2026-06-10")

    # c2 is only in group g1: no 1:1 message, one post to g1 instead, and the plan says so.
    assert dict(report.by_route) == {"staff_task": 2, "group": 1}
    assert dict(report.by_segment) == {"dormant": 2, "at_risk": 1}
    assert report.not_planned == {"group_only": 1, "unreachable": 1}
    assert "1 members are reachable only in groups: 1 group posts planned" in report.notes[-1]
    rows = await Outbox(engine).claim("t", limit=10, now=T0, lease_seconds=60)
    post = next(r for r in rows if r.channel == "group")
    assert (post.target, post.segment, post.member_id) == ("group:g1", "dormant", None)
    mine = next(r for r in rows if r.member_id == staff)
    assert mine.address == {"owner": "zhang", "external_userid": "wmA"}
    assert STORE_PROMO in mine.text  # the store's own promotion for a member of that store
    assert mine.variant == "template:dormant"


async def test_cooldown_skips_members_won_back_recently(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    await members.add("c1", route="contact", idle=timedelta(days=45), owner_userid="z",
                 external_userid="wmA")  # fmt: skip
    winback = await campaign(engine, "winback", "reengage", options={"cooldown_days": 14})
    first = await planner.plan(winback, now=T0, run_key="r1")
    (row,) = await Outbox(engine).claim("t", limit=1, now=T0, lease_seconds=60)
    await Outbox(engine).mark_sent(row.id or 0, "t", now=T0, platform_id="x")
    again = await planner.plan(winback, now=T0 + timedelta(days=3), run_key="r2")
    later = await planner.plan(winback, now=T0 + timedelta(days=15), run_key="r3")
    assert first.planned == 1
    assert again.planned == 0
    assert again.not_planned == {"cooldown": 1}
    assert later.planned == 1


async def test_reports_count_states_and_reactivation(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    ids = [
        await members.add(f"c{i}", route="contact", idle=timedelta(days=45),
                     owner_userid="z", external_userid=f"wm{i}")
        for i in range(3)
    ]  # fmt: skip
    winback = await campaign(engine, "winback", "reengage")
    report = await planner.plan(winback, now=T0, run_key="r1")
    box = Outbox(engine)
    rows = await box.claim("t", limit=10, now=T0, lease_seconds=60)
    await box.mark_sent(rows[0].id or 0, "t", now=T0, platform_id="x")
    await box.mark_sent(rows[1].id or 0, "t", now=T0, platform_id="y")
    await box.mark_skipped(rows[2].id or 0, "t", reason="opted_out")
    back, silent = rows[0].member_id, rows[1].member_id
    assert back in ids
    assert silent in ids
    async with engine.begin() as conn:  # one writes 10 h later, the other after 4 days
        for who, after in ((back, timedelta(hours=10)), (silent, timedelta(days=4))):
            await conn.execute(
                LOG.insert().values(
                    session_key="x", member_id=who, role="user", text="在吗",
                    citations=[], created_at=T0 + after,
                )
            )  # fmt: skip
    assert await run_counts(engine, report.run_id or 0) == {"sent": 2, "skipped: opted_out": 1}
    (line,) = await reactivation(engine, report.run_id or 0)
    assert (line.segment, line.variant, line.sent, line.reactivated) == (
        "dormant", "template:dormant", 2, 1,
    )  # fmt: skip
    assert line.rate == 0.5


async def test_interests_from_questions_reach_the_profile_before_copy(
    engine: AsyncEngine, planner: Planner, members: Members
) -> None:
    who = await members.add("c1", route="contact", idle=timedelta(days=45), owner_userid="z",
        external_userid="wmA",
    )  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(
            LOG.insert().values(
                session_key="x", member_id=who, role="user", text="有没有新鲜的面包和蛋糕？",
                citations=[], created_at=T0 - timedelta(days=45),
            )
        )  # fmt: skip
    winback = await campaign(engine, "winback", "reengage")
    await planner.plan(winback, now=T0, run_key="r1")
    async with engine.connect() as conn:
        interests = (
            (await conn.execute(PROFILE.select().where(PROFILE.c.member_id == who)))
            .one()
            ._mapping["interests"]
        )
    assert interests == ["烘焙"]


async def test_bridge_groups_are_pushed_and_a_malformed_one_is_refused(
    engine: AsyncEngine, planner: Planner
) -> None:
    deals = await campaign(
        engine, "deals", "daily_deals", store_id="s1",
        options={"groups": ["g1"], "bridge_groups": ["bridge:group-42"]},
    )  # fmt: skip
    await planner.plan(deals, now=T0, run_key="2026-06-10")
    rows = await Outbox(engine).claim("t", limit=10, now=T0, lease_seconds=60)
    posts = sorted((r.target, r.channel, tuple(sorted(r.address.items()))) for r in rows)
    assert posts == [
        ("group:g1", "group", (("robot", "g1"),)),
        ("group:webhook.bridge:group-42", "webhook",
         (("bridge", "bridge"), ("conversation", "group-42"))),
    ]  # fmt: skip
    bad = await campaign(engine, "bad", "daily_deals", options={"bridge_groups": ["group-42"]})
    with pytest.raises(ValueError, match="'group-42': expected <bridge>:<conversation>"):
        await planner.plan(bad, now=T0, run_key="2026-06-10", write=False)
