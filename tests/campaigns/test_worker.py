"""The delivery worker end to end: outbox rows → policy → the fake platform over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.wecom.config import (
    ContactAccount,
    KfAccount,
    OfficialAccountConfig,
    RobotAccount,
    WeComSettings,
)
from adapters.wecom.outbound import PlatformSender, platform_sender
from bot.contact import ContactLedger
from bot.models import Member
from bot.types import Address, Outbound
from campaigns.config import CampaignsConfig, RateLimits
from campaigns.locks import SendLocks
from campaigns.outbox import OUTBOX, Outbox, Planned
from campaigns.worker import UNKNOWN_OUTCOME, DeliveryWorker
from tests.campaigns.conftest import T0, add_member
from tests.campaigns.test_outbox import new_run
from tests.fakes.wecom_server import FakePlatform, wecom_server

__all__ = ["wecom_server"]

KFID = "wkMAIN"
FAST = RateLimits(
    kf_per_minute=60_000, oa_per_minute=60_000, staff_task_per_minute=60_000,
    robot_per_minute=20,
)  # fmt: skip
CONFIG = CampaignsConfig(rates=FAST)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def sender(wecom_server: FakePlatform) -> AsyncIterator[PlatformSender]:
    fake = wecom_server
    kf = KfAccount(
        name="main", token=SecretStr("t"), encoding_aes_key=None, corp_id=fake.corp_id,
        secret=SecretStr(fake.corp_secret),
    )  # fmt: skip
    oa = OfficialAccountConfig(
        name="oa1", token=SecretStr("t"), app_id=fake.oa_app_id,
        secret=SecretStr(fake.oa_secret), mode="plain",
    )  # fmt: skip
    wecom = WeComSettings(
        _env_file=None, kf=[kf], official_accounts=[oa],
        robots=[RobotAccount(name="r1", key=SecretStr("k1"))],
        contact=ContactAccount(corp_id=fake.corp_id, secret=SecretStr(fake.corp_secret)),
        api_base=fake.url, wechat_api_base=fake.url,
    )  # fmt: skip
    async with platform_sender(wecom) as sender:
        yield sender


async def kf_rows(
    engine: AsyncEngine, fake: FakePlatform, users: list[str], *, wrote: bool = True,
    platform_window: bool = True,
) -> list[Planned]:  # fmt: skip
    """kf members and a message for each. ``wrote``: the member's message reached the core (its
    address recorded, its contact window open); ``platform_window``: the fake saw it too."""
    rows = []
    for user in users:
        member = await add_member(engine, user, channel="kf.main", last_active=T0)
        address = Address("kf", "main", user, chat=KFID)
        if wrote:
            await ContactLedger(engine).arrived(member, address, T0)
        if platform_window:
            fake.add_kf_message(user, "你好", open_kfid=KFID)
        rows.append(
            Planned(
                target=f"person:m{member}", channel="kf", text=f"今日特惠 {user}",
                address=address.as_fields(), not_before=T0, member_id=member,
                person=f"m{member}", segment="active",
            )
        )  # fmt: skip
    return rows


async def oa_row(engine: AsyncEngine, fake: FakePlatform) -> Planned:
    """An Official Account member whose 48-hour window is open, and a message for them."""
    member = await add_member(engine, "o1", channel="oa.oa1", last_active=T0)
    address = Address("oa", "oa1", "o1")
    await ContactLedger(engine).arrived(member, address, T0)
    fake.add_oa_message("o1")
    return Planned(
        target="person:o1", channel="oa", text="hi", address=address.as_fields(),
        not_before=T0, member_id=member, person=f"m{member}",
    )  # fmt: skip


def worker(
    engine: AsyncEngine, sender: PlatformSender, clock: Clock, **kw: object
) -> DeliveryWorker:
    return DeliveryWorker(engine, sender, CONFIG, owner="w1", clock=clock, **kw)  # type: ignore[arg-type]


async def states(engine: AsyncEngine, run: int) -> dict[tuple[str, str | None], int]:
    return await Outbox(engine).counts(run)


async def test_kf_rows_are_delivered_once_each(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    await Outbox(engine).add(run, await kf_rows(engine, wecom_server, ["u1", "u2", "u3"]), T0)
    assert await worker(engine, sender, Clock()).drain() == 3
    assert await states(engine, run) == {("sent", None): 3}
    assert sorted(s["touser"] for s in wecom_server.kf_sent) == ["u1", "u2", "u3"]
    assert all(s["msgid"].startswith("siyu-ob-") for s in wecom_server.kf_sent)
    # Nothing is due any more: a second pass sends nothing.
    assert await worker(engine, sender, Clock()).drain() == 0
    assert len(wecom_server.kf_sent) == 3


async def test_an_opt_out_mid_run_stops_the_remaining_sends(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    rows = await kf_rows(engine, wecom_server, ["u1", "u2", "u3"])
    await Outbox(engine).add(run, rows, T0)
    w = worker(engine, sender, Clock(), batch=1)
    assert await w.run_once() == 1  # u1 is sent
    async with engine.begin() as conn:  # u3 replies 退订 meanwhile
        await conn.execute(
            sa.update(Member).where(Member.external_id == "u3").values(opted_out=True)  # type: ignore[arg-type]
        )
    await w.drain()
    assert await states(engine, run) == {("sent", None): 2, ("skipped", "opted_out"): 1}
    assert "u3" not in {s["touser"] for s in wecom_server.kf_sent}


async def test_quiet_hours_defer_to_the_morning(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    night = T0 + timedelta(hours=12)  # 22:00 in Shanghai
    rows = await kf_rows(engine, wecom_server, ["u1"])
    async with engine.begin() as conn:
        await conn.execute(sa.update(Member).values(last_active=night))
    await Outbox(engine).add(run, rows, night)
    clock = Clock(night)
    await worker(engine, sender, clock).drain()
    assert wecom_server.kf_sent == []
    assert await states(engine, run) == {("pending", None): 1}
    clock.now = night + timedelta(hours=10, minutes=30)  # 08:30 the next morning
    await worker(engine, sender, clock).drain()
    assert await states(engine, run) == {("sent", None): 1}


async def test_a_closed_contact_window_is_a_skip_without_a_platform_call(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    rows = await kf_rows(engine, wecom_server, ["u1"], wrote=False)
    await Outbox(engine).add(run, rows, T0)
    await worker(engine, sender, Clock()).drain()
    assert await states(engine, run) == {("skipped", "window_closed"): 1}
    assert wecom_server.count("/cgi-bin/kf/send_msg") == 0


async def test_a_used_up_window_skips_the_push(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    (row,) = await kf_rows(engine, wecom_server, ["u1"])
    # The bot's answers used the whole window since the member's message.
    assert await ContactLedger(engine).consume(Address.from_fields(row.address), 5, T0)
    await Outbox(engine).add(run, [row], T0)
    await worker(engine, sender, Clock()).drain()
    assert await states(engine, run) == {("skipped", "window_closed"): 1}
    assert wecom_server.count("/cgi-bin/kf/send_msg") == 0


async def test_a_row_without_a_recorded_address_fails_clearly(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    """A kf row whose address is not an :class:`Address` (planned before addresses were
    recorded: the open_kfid parsed out of a session key) fails as refused, naming what lacks."""
    run = await new_run(engine)
    (row,) = await kf_rows(engine, wecom_server, ["u1"])
    old = replace(row, address={"account": "main", "open_kfid": KFID, "external_userid": "u1"})
    await Outbox(engine).add(run, [old], T0)
    await worker(engine, sender, Clock()).drain()
    assert await states(engine, run) == {("failed", "rejected"): 1}
    async with engine.connect() as conn:
        error = (await conn.execute(sa.text("SELECT error FROM outbox"))).scalar_one()
    assert "an address without route, user" in error
    assert wecom_server.count("/cgi-bin/kf/send_msg") == 0


async def test_a_closed_platform_window_is_a_skip_not_a_retry(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    (row,) = await kf_rows(engine, wecom_server, ["u1"], platform_window=False)
    await Outbox(engine).add(run, [row], T0)
    await worker(engine, sender, Clock()).drain()
    assert await states(engine, run) == {("skipped", "window_closed"): 1}
    assert wecom_server.count("/cgi-bin/kf/send_msg") == 1
    # The platform knows best: the ledger's window is closed too until the member writes.
    assert await ContactLedger(engine).remaining(Address.from_fields(row.address), T0) == 0


async def test_a_busy_platform_is_retried_later_with_backoff(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    await Outbox(engine).add(run, await kf_rows(engine, wecom_server, ["u1"]), T0)
    wecom_server.fail_next("/cgi-bin/kf/send_msg", -1, times=3)  # the client's own 3 attempts
    clock = Clock()
    await worker(engine, sender, clock).drain()
    assert await states(engine, run) == {("pending", None): 1}
    clock.now = T0 + timedelta(seconds=31)
    await worker(engine, sender, clock).drain()
    assert await states(engine, run) == {("sent", None): 1}
    assert len(wecom_server.kf_sent) == 1


async def test_an_interrupted_non_idempotent_send_is_not_repeated(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    row = await oa_row(engine, wecom_server)
    box = Outbox(engine)
    await box.add(run, [row], T0)
    (claimed,) = await box.claim("dead", limit=1, now=T0, lease_seconds=1)
    assert await box.begin_attempt(claimed.id or 0, "dead", now=T0, lease_seconds=1)
    # The worker died during the call; its lease runs out; the next worker must not resend.
    await worker(engine, sender, Clock(T0 + timedelta(seconds=5))).drain()
    assert await states(engine, run) == {("failed", None): 1}
    assert wecom_server.custom_sent == []
    counts = await box.claim("x", limit=1, now=T0 + timedelta(hours=1), lease_seconds=1)
    assert counts == []
    async with engine.connect() as conn:
        error = (await conn.execute(sa.text("SELECT error FROM outbox"))).scalar_one()
    assert error == UNKNOWN_OUTCOME


async def test_an_interrupted_send_stays_unrepeated_while_its_person_is_busy(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    row = await oa_row(engine, wecom_server)
    box = Outbox(engine)
    await box.add(run, [row], T0)
    (claimed,) = await box.claim("dead", limit=1, now=T0, lease_seconds=1)
    assert await box.begin_attempt(claimed.id or 0, "dead", now=T0, lease_seconds=1)
    locks = SendLocks(engine)
    assert await locks.acquire(f"person:{row.person}", "other", 60)  # another send to them
    clock = Clock(T0 + timedelta(seconds=5))
    await worker(engine, sender, clock).drain()
    await locks.release(f"person:{row.person}", "other")
    clock.now += timedelta(minutes=1)
    await worker(engine, sender, clock).drain()
    assert await states(engine, run) == {("failed", None): 1}
    assert wecom_server.custom_sent == []


async def test_staff_tasks_are_grouped_per_owner(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    rows = []
    for i, owner in enumerate(["zhang", "zhang", "li", "zhang"]):
        member = await add_member(
            engine, f"c{i}", channel="contact", last_active=T0 - timedelta(days=40)
        )
        rows.append(
            Planned(
                target=f"person:m{member}", channel="staff_task", text="好久不见，本周特惠",
                address={"owner": owner, "external_userid": f"wm{i}"}, not_before=T0,
                member_id=member, person=f"m{member}", segment="dormant",
            )
        )  # fmt: skip
    await Outbox(engine).add(run, rows, T0)
    await worker(engine, sender, Clock()).drain()
    assert await states(engine, run) == {("sent", None): 4}
    tasks = {t["sender"]: sorted(t["external_userid"]) for t in wecom_server.templates_sent}
    assert tasks == {"zhang": ["wm0", "wm1", "wm3"], "li": ["wm2"]}


async def staff_rows(engine: AsyncEngine, owners: dict[str, int]) -> list[Planned]:
    """Dormant customers of each staff owner (``owner`` → how many), one win-back text."""
    rows = []
    for owner, count in owners.items():
        for i in range(count):
            member = await add_member(
                engine, f"{owner}{i}", channel="contact", last_active=T0 - timedelta(days=40)
            )
            rows.append(
                Planned(
                    target=f"person:m{member}", channel="staff_task", text="好久不见，本周特惠",
                    address={"owner": owner, "external_userid": f"wm-{owner}{i}"},
                    not_before=T0, member_id=member, person=f"m{member}", segment="dormant",
                )
            )  # fmt: skip
    return rows


async def test_an_owner_gets_one_task_per_run_and_text_across_claims(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    await Outbox(engine).add(run, await staff_rows(engine, {"zhang": 25, "li": 3}), T0)
    w1 = DeliveryWorker(engine, sender, CONFIG, owner="w1", clock=Clock(), batch=10)
    w2 = DeliveryWorker(engine, sender, CONFIG, owner="w2", clock=Clock(), batch=10)
    await asyncio.gather(w1.drain(), w2.drain())  # two workers, claims of 10
    assert await states(engine, run) == {("sent", None): 28}
    tasks = sorted((t["sender"], len(t["external_userid"])) for t in wecom_server.templates_sent)
    assert tasks == [("li", 3), ("zhang", 25)]


async def test_a_task_interrupted_mid_send_is_never_sent_again(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    box = Outbox(engine)
    await box.add(run, await staff_rows(engine, {"zhang": 25}), T0)
    # A worker claimed 20, gathered the task's 25, recorded the attempt, then died in the call.
    first, *_ = await box.claim("dead", limit=20, now=T0, lease_seconds=1)
    whole = await box.claim_task(first, "dead", now=T0, lease_seconds=1, due=T0)
    ids = [r.id or 0 for r in whole]
    assert len(await box.begin_attempts(ids, "dead", now=T0, lease_seconds=1)) == 25
    await worker(engine, sender, Clock(T0 + timedelta(seconds=5))).drain()
    assert await states(engine, run) == {("failed", None): 25}
    assert wecom_server.templates_sent == []


async def test_group_posts_and_expired_promotions(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    rows = [
        Planned(target="group:r1", channel="group", text="今日特惠", address={"robot": "r1"},
                not_before=T0, expires_at=T0 + timedelta(hours=1)),
        Planned(target="group:r1-old", channel="group", text="昨日特惠", address={"robot": "r1"},
                not_before=T0, expires_at=T0 - timedelta(minutes=1)),
        Planned(target="group:nope", channel="group", text="今日特惠", address={"robot": "nope"},
                not_before=T0),
    ]  # fmt: skip
    await Outbox(engine).add(run, rows, T0)
    await worker(engine, sender, Clock()).drain()
    assert await states(engine, run) == {
        ("sent", None): 1, ("skipped", "expired"): 1, ("failed", "rejected"): 1,
    }  # fmt: skip
    assert [p["text"]["content"] for _, p in wecom_server.robot_sent] == ["今日特惠"]


async def test_two_workers_never_both_pass_one_persons_cap(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    # One person, two runs planned for the same morning (a daily deal and a win-back).
    (row,) = await kf_rows(engine, wecom_server, ["u1"])
    runs = [await new_run(engine, "deals"), await new_run(engine, "winback")]
    for run in runs:
        await Outbox(engine).add(run, [row], T0)
    clock = Clock()
    w1 = DeliveryWorker(engine, sender, CONFIG, owner="w1", clock=clock, batch=1)
    w2 = DeliveryWorker(engine, sender, CONFIG, owner="w2", clock=clock, batch=1)
    for _ in range(3):
        await asyncio.gather(w1.run_once(), w2.run_once())
        clock.now += timedelta(seconds=3)  # a row put back while the other worker held u1
    finals = [await states(engine, run) for run in runs]
    assert sorted(finals, key=str) == sorted(
        [{("sent", None): 1}, {("skipped", "cap"): 1}], key=str
    )
    assert len(wecom_server.kf_sent) == 1


async def test_a_late_answer_on_a_route_without_caller_id_is_not_resent(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    row = await oa_row(engine, wecom_server)
    await Outbox(engine).add(run, [row], T0)
    wecom_server.http_status("/cgi-bin/message/custom/send", 502)
    clock = Clock()
    await worker(engine, sender, clock).drain()
    clock.now += timedelta(hours=1)
    await worker(engine, sender, clock).drain()
    assert await states(engine, run) == {("failed", "unknown"): 1}
    assert wecom_server.count("/cgi-bin/message/custom/send") == 1


@dataclass
class StopAfterFirst:
    """The platform sender, and SIGTERM arriving while the first send is on the wire."""

    inner: PlatformSender
    stop: asyncio.Event

    async def send(self, message: Outbound, /) -> str:
        self.stop.set()
        return await self.inner.send(message)


async def test_stopping_finishes_the_send_in_hand_and_gives_back_the_rest_of_the_batch(
    engine: AsyncEngine, wecom_server: FakePlatform, sender: PlatformSender
) -> None:
    run = await new_run(engine)
    await Outbox(engine).add(run, await kf_rows(engine, wecom_server, ["u1", "u2", "u3"]), T0)
    stop = asyncio.Event()
    w = DeliveryWorker(
        engine, StopAfterFirst(sender, stop), CONFIG, owner="w1", clock=Clock(), batch=3
    )
    await asyncio.wait_for(w.run(stop), 30)
    assert await states(engine, run) == {("sent", None): 1, ("pending", None): 2}
    assert [s["touser"] for s in wecom_server.kf_sent] == ["u1"]
    async with engine.connect() as conn:
        held = await conn.scalar(
            sa.select(sa.func.count()).where(OUTBOX.c.lease_owner.is_not(None))
        )
    assert held == 0  # another worker may claim u2 and u3 at once
    assert await worker(engine, sender, Clock()).drain() == 2  # ...and does
