"""Planning a campaign run: who gets which message through which route, written to the outbox.

A run is ``(campaign, run_key)``, unique: the scheduler's key is the local date, so a daily job
that fires twice plans once. Planning writes every outbox row of the run (``Outbox.add`` ignores
rows already there), then marks the run ``planned``; a crash mid-plan leaves it ``planning`` and
the next attempt completes it without duplicating a row.

**Daily deals** (``kind="daily_deals"``): the promotions valid at the moment of planning for the
campaign's store (all-store ones included; a chain-wide campaign only sees all-store ones). One
message, posted to each of the campaign's groups (``options["groups"]``: robot names), to each
bridge conversation (``options["bridge_groups"]``: ``"<bridge>:<conversation>"``, pushed to the
bridge's ``push_url``) and sent to each member of that store whose contact window is open with a
send left (the only members those routes can reach): the window of the address they last wrote
from, as the adapter recorded it (:mod:`bot.contact`); nothing is parsed back out of channel
names or session keys. Members whose window is closed or used up are counted ``window_closed``;
members who never wrote through a route with a window (imported contacts, the web chat) are not
candidates. No valid promotion → nothing is planned, and the report says so. Decision: a bridge
is reached only in the conversations the operator names, the way robot groups are; members last
seen through a bridge are not pushed to 1:1, because nothing tells us the bridge may still write
to them.

**Re-engagement** (``kind="reengage"``): members of ``options["segments"]`` (default at_risk and
dormant), consenting, not contacted by any re-engagement message within the cooldown
(``options["cooldown_days"]``, else the settings'). Contacted means a re-engagement outbox row
for the person (target ``person:<person>``) or the group (target ``group:<robot>``) that was
sent within the cooldown, or is still pending from a run planned within it: a group reachable
only through its robot gets a win-back post at most once per cooldown, however often the
campaign runs. Each person gets one message, written per (segment, interest, store) from the
promotions valid for their home store; interests are first refreshed from the members'
questions of the last 180 days (:mod:`campaigns.interests`). A preview (``write=False``) writes
nothing at all: it reads those interests in memory instead of storing them.
Dormant members are outside the 48-hour windows, so the route is chosen honestly, per person:

1. an identity whose contact window is still open with a send left → that route and address;
2. else a staff owner and external userid → an ``add_msg_template`` task for the owner (the
   worker groups one task per owner; it reaches the member once the owner confirms it);
3. else no 1:1 message: the person is counted as reachable only in groups (each such group gets
   one post in the segment's voice, and the plan says so) or not reachable at all. Nothing
   pretends to send.

Copy comes from :class:`campaigns.copy.CopyWriter` (LLM checked against the promotions' facts,
or the operator's templates); copy refused by the compliance check plans no rows for that
(segment, interest) and is reported.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.contact import ContactLedger, Reach
from bot.models import require_aware
from campaigns.config import CampaignsConfig
from campaigns.copy import Copy, CopyRejected, CopyWriter
from campaigns.interests import inferred_interests, refresh_interests
from campaigns.models import Campaign, CampaignRun, OutboxRow
from campaigns.outbox import Outbox, Planned
from campaigns.promotions import Promotion, promotions_from_chunks, valid_promotions
from campaigns.segments import BUILTIN, Audience, SegmentRule, lifecycle, select_audience
from knowledge.base import KnowledgeBase
from knowledge.types import Kind

log = logging.getLogger(__name__)

DEFAULT_REENGAGE_SEGMENTS = ("at_risk", "dormant")
VARIANT_CHARS = 64
"""outbox.variant's width; an operator's long interest name is cut, not refused."""
INTEREST_LOOKBACK = timedelta(days=180)
"""Questions older than this do not add interests (a member's tastes change)."""
RUNS = CampaignRun.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]


@dataclass
class PlanReport:
    """What a plan did (or, for a preview, would do)."""

    campaign: str
    run_key: str
    run_id: int | None = None
    planned: int = 0
    added: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_segment: Counter[str] = field(default_factory=Counter)
    not_planned: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    promotions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign, "run_key": self.run_key, "run_id": self.run_id,
            "planned": self.planned, "added": self.added, "by_route": dict(self.by_route),
            "by_segment": dict(self.by_segment), "not_planned": dict(self.not_planned),
            "promotions": self.promotions, "samples": self.samples, "notes": self.notes,
        }  # fmt: skip


class Planner:
    """Turns a campaign into outbox rows (or a preview of them)."""

    def __init__(
        self,
        engine: AsyncEngine,
        knowledge: KnowledgeBase,
        copy: CopyWriter,
        config: CampaignsConfig,
    ) -> None:
        self._engine = engine
        self._knowledge = knowledge
        self._copy = copy
        self._config = config
        self._outbox = Outbox(engine)
        self._contacts = ContactLedger(engine)

    async def plan(
        self, campaign: Campaign, *, now: datetime, run_key: str, write: bool = True
    ) -> PlanReport:
        """Plan ``campaign``'s run ``run_key`` at ``now``; with ``write=False`` a preview."""
        require_aware(now)
        report = PlanReport(campaign.name, run_key)
        run_id: int | None = None
        if write:
            run_id, state = await self._open_run(campaign, run_key, now)
            report.run_id = run_id
            if state == "planned":
                report.notes.append("this run was already planned; nothing added")
                return report
        if campaign.kind == "daily_deals":
            rows = await self._daily_deals(campaign, now, report)
        elif campaign.kind == "reengage":
            rows = await self._reengage(campaign, now, report, write=write)
        else:
            raise ValueError(f"unknown campaign kind {campaign.kind!r}")
        report.planned = len(rows)
        for row in rows:
            report.by_route[row.channel] += 1
            if row.segment:
                report.by_segment[row.segment] += 1
        if write and run_id is not None:
            report.added = await self._outbox.add(run_id, rows, now)
            await self._close_run(run_id, report)
        return report

    # --- the kinds -------------------------------------------------------------------------

    async def _daily_deals(
        self, campaign: Campaign, now: datetime, report: PlanReport
    ) -> list[Planned]:
        promos = self._promotions(campaign.store_id, now)
        report.promotions = [p.title for p in promos]
        if not promos:
            report.notes.append("no promotion is valid today for this store: nothing to send")
            return []
        copy = await self._write(report, "daily_deals", promos, None)
        if copy is None:
            return []
        expires = _expiry(promos)
        rows = _group_rows(campaign.options, copy, now, expires)
        # Every member of the store: those with a window, open or not, are counted.
        people = await self._people(SegmentRule(name="daily_deals", store=campaign.store_id), now)
        reach = await self._reach(people, now)
        for person, identities in people.items():
            open_id = _open_window(identities, reach)
            if open_id is None:
                if any(a.member_id in reach for a in identities):
                    report.not_planned["window_closed"] += 1
                continue
            address = reach[open_id.member_id].address
            rows.append(
                Planned(
                    target=f"person:{person}", channel=address.route, text=copy.text,
                    address=address.as_fields(), not_before=now, member_id=open_id.member_id,
                    person=person, segment=lifecycle(open_id.first_seen, open_id.last_active, now),
                    variant=copy.variant[:VARIANT_CHARS], expires_at=expires,
                )
            )  # fmt: skip
        return rows

    async def _reengage(
        self, campaign: Campaign, now: datetime, report: PlanReport, *, write: bool
    ) -> list[Planned]:
        names = _names(campaign.options.get("segments")) or list(DEFAULT_REENGAGE_SEGMENTS)
        unknown = [n for n in names if n not in BUILTIN]
        if unknown:
            raise ValueError(f"unknown segments {unknown}; known: {sorted(BUILTIN)}")
        fresh = await self._fresh_interests(now, write=write)
        days = campaign.options.get("cooldown_days", self._config.reengage_cooldown_days)
        contacted = await self._contacted_since(now - timedelta(days=float(days)))
        rows: list[Planned] = []
        seen: set[str] = set()
        groups: dict[str, tuple[str, str | None]] = {}  # robot → (segment, store) of group-only
        for name in names:
            rule = replace(BUILTIN[name], store=campaign.store_id)
            people = await self._people(rule, now)
            reach = await self._reach(people, now)
            for person, identities in people.items():
                if person in seen:
                    continue
                seen.add(person)
                if f"person:{person}" in contacted:
                    report.not_planned["cooldown"] += 1
                    continue
                identities = _with_interests(identities, fresh)
                route = _route(identities, reach)
                if route is None:
                    _count_group_only(identities, name, groups, report)
                    continue
                row = await self._reengage_row(person, identities, name, route, now, report)
                if row is not None:
                    rows.append(row)
        rows.extend(await self._group_posts(groups, contacted, now, report))
        return rows

    async def _fresh_interests(self, now: datetime, *, write: bool) -> dict[int, list[str]]:
        """Interests come from what members asked; bring them up to date before writing copy.
        A plan stores them in the profiles (nothing left to add in memory); a preview only
        reads them, member id → interests, and the plan adds them to the identities."""
        since = now - INTEREST_LOOKBACK
        if write:
            await refresh_interests(self._engine, since=since, now=now)
            return {}
        return await inferred_interests(self._engine, since=since)

    async def _group_posts(
        self,
        groups: dict[str, tuple[str, str | None]],
        contacted: set[str],
        now: datetime,
        report: PlanReport,
    ) -> list[Planned]:
        """One post per group holding members no 1:1 route reaches, in their segment's voice;
        none to a group that had one within the cooldown (``contacted``)."""
        rows = []
        for robot, (segment, store) in sorted(groups.items()):
            if f"group:{robot}" in contacted:
                report.not_planned["group_cooldown"] += 1
                continue
            promos = self._promotions(store, now)
            copy = await self._write(report, segment, promos, None) if promos else None
            if copy is None:
                continue
            rows.append(
                Planned(
                    target=f"group:{robot}", channel="group", text=copy.text,
                    address={"robot": robot}, not_before=now, segment=segment,
                    variant=copy.variant[:VARIANT_CHARS], expires_at=_expiry(promos),
                )
            )  # fmt: skip
        if rows:
            report.notes.append(
                f"{report.not_planned['group_only']} members are reachable only in groups: "
                f"{len(rows)} group posts planned instead of 1:1 messages"
            )
        return rows

    async def _reengage_row(
        self,
        person: str,
        identities: list[Audience],
        segment: str,
        chosen: tuple[str, Audience, dict[str, Any]],
        now: datetime,
        report: PlanReport,
    ) -> Planned | None:
        first = identities[0]
        route, member, address = chosen
        promos = self._promotions(first.home_store, now)
        if not promos:
            report.not_planned["no_promotion"] += 1
            return None
        report.promotions.extend(p.title for p in promos if p.title not in report.promotions)
        interest = next((i for a in identities for i in a.interests), None)
        copy = await self._write(report, segment, promos, interest)
        if copy is None:
            report.not_planned["compliance"] += 1
            return None
        return Planned(
            target=f"person:{person}", channel=route, text=copy.text, address=address,
            not_before=now, member_id=member.member_id, person=person, segment=segment,
            variant=copy.variant[:VARIANT_CHARS], expires_at=_expiry(promos),
        )  # fmt: skip

    # --- pieces ----------------------------------------------------------------------------

    def _promotions(self, store_id: str | None, now: datetime) -> list[Promotion]:
        chunks = self._knowledge.active_chunks(Kind.PROMOTION)
        return valid_promotions(promotions_from_chunks(chunks), store_id=store_id, start=now)

    async def _write(
        self, report: PlanReport, segment: str, promos: Sequence[Promotion], interest: str | None
    ) -> Copy | None:
        try:
            copy = await self._copy.write(segment, promos, interest=interest)
        except CopyRejected as exc:
            note = f"copy for {segment}/{interest or '-'} refused by the compliance check: {exc}"
            if note not in report.notes:
                report.notes.append(note)
            return None
        report.samples.setdefault(copy.variant, copy.text)
        return copy

    async def _people(self, rule: SegmentRule, now: datetime) -> dict[str, list[Audience]]:
        """The rule's members grouped by person, most recently active identity first."""
        people: dict[str, list[Audience]] = defaultdict(list)
        async for batch in select_audience(self._engine, rule, now=now):
            for member in batch:
                people[member.person].append(member)
        for identities in people.values():
            identities.sort(key=lambda a: a.last_active, reverse=True)
        return dict(people)

    async def _reach(self, people: dict[str, list[Audience]], now: datetime) -> dict[int, Reach]:
        """The identities whose latest address has a contact window, and what it allows now."""
        member_ids = [a.member_id for identities in people.values() for a in identities]
        return await self._contacts.reach(member_ids, now)

    async def _contacted_since(self, since: datetime) -> set[str]:
        """Targets (``person:…``, ``group:…``) of re-engagement rows sent since ``since``, or
        still pending from a run planned since then (they are about to be sent)."""
        camp = Campaign.__table__  # type: ignore[attr-defined]
        stmt = (
            sa.select(OUTBOX.c.target)
            .join(RUNS, RUNS.c.id == OUTBOX.c.run_id)
            .join(camp, camp.c.id == RUNS.c.campaign_id)
            .where(camp.c.kind == "reengage", OUTBOX.c.state.in_(("sent", "pending")))
            .where(sa.func.coalesce(OUTBOX.c.sent_at, OUTBOX.c.created_at) >= since)
            .distinct()
        )
        async with self._engine.connect() as conn:
            return {str(t) for (t,) in await conn.execute(stmt)}

    async def _open_run(self, campaign: Campaign, run_key: str, now: datetime) -> tuple[int, str]:
        if campaign.id is None:
            raise ValueError("the campaign is not stored")
        async with self._engine.begin() as conn:
            existing = (
                await conn.execute(
                    sa.select(RUNS.c.id, RUNS.c.state).where(
                        RUNS.c.campaign_id == campaign.id, RUNS.c.run_key == run_key
                    )
                )
            ).first()
            if existing is not None:
                return int(existing[0]), str(existing[1])
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    RUNS.insert()
                    .values(
                        campaign_id=campaign.id, run_key=run_key, state="planning",
                        planned_at=now, summary={},
                    )
                    .returning(RUNS.c.id)
                )  # fmt: skip
                return int(result.scalar_one()), "planning"
        except sa.exc.IntegrityError:  # another planner opened it meanwhile
            return await self._open_run(campaign, run_key, now)

    async def _close_run(self, run_id: int, report: PlanReport) -> None:
        summary = report.as_dict()
        summary.pop("samples")
        async with self._engine.begin() as conn:
            await conn.execute(
                RUNS.update().where(RUNS.c.id == run_id).values(state="planned", summary=summary)
            )


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if str(v).strip()]
    raise ValueError(f"expected a list of names, got {value!r}")


def _group_rows(
    options: dict[str, Any], copy: Copy, now: datetime, expires: datetime | None
) -> list[Planned]:
    """One post per robot group (``groups``) and per bridge conversation (``bridge_groups``)."""
    posts = [(f"group:{r}", "group", {"robot": r}) for r in _names(options.get("groups"))]
    posts += [(t, "webhook", a) for t, a in _bridge_groups(options.get("bridge_groups"))]
    return [
        Planned(
            target=target, channel=route, text=copy.text, address=address, not_before=now,
            segment="group", variant=copy.variant[:VARIANT_CHARS], expires_at=expires,
        )
        for target, route, address in posts
    ]  # fmt: skip


BRIDGE_TARGET_CHARS = 200
"""outbox.target's width."""


def _bridge_groups(value: Any) -> list[tuple[str, dict[str, str]]]:
    """``"<bridge>:<conversation>"`` names → (target, webhook address); a clear ValueError for
    a name without both parts or too long to be a target."""
    out = []
    for name in _names(value):
        bridge, _, conversation = name.partition(":")  # operator syntax, as the docs give it
        if not bridge or not conversation:
            raise ValueError(f"bridge group {name!r}: expected <bridge>:<conversation>")
        target = f"group:webhook.{bridge}:{conversation}"
        if len(target) > BRIDGE_TARGET_CHARS:
            raise ValueError(f"bridge group {name!r} is longer than a target may be")
        out.append((target, {"bridge": bridge, "conversation": conversation}))
    return out


def _with_interests(identities: list[Audience], fresh: dict[int, list[str]]) -> list[Audience]:
    """The identities with the interests read for a preview added after their stored ones."""
    if not fresh:
        return identities
    return [
        replace(a, interests=tuple(dict.fromkeys([*a.interests, *fresh.get(a.member_id, [])])))
        for a in identities
    ]


def _count_group_only(
    identities: Sequence[Audience],
    segment: str,
    groups: dict[str, tuple[str, str | None]],
    report: PlanReport,
) -> None:
    """A person no 1:1 route reaches: counted, and their groups noted for one post each."""
    reason = "group_only" if any(a.groups for a in identities) else "unreachable"
    report.not_planned[reason] += 1
    for a in identities:
        for robot in a.groups:
            groups.setdefault(robot, (segment, a.home_store))


def _open_window(identities: Sequence[Audience], reach: dict[int, Reach]) -> Audience | None:
    """The most recently active identity whose contact window has a send left."""
    return next((a for a in identities if _sends_left(reach.get(a.member_id))), None)


def _sends_left(reach: Reach | None) -> bool:
    return reach is not None and reach.remaining > 0


def _route(
    identities: Sequence[Audience], reach: dict[int, Reach]
) -> tuple[str, Audience, dict[str, Any]] | None:
    """How to reach a person 1:1: an open contact window, else their staff owner's task."""
    open_id = _open_window(identities, reach)
    if open_id is not None:
        address = reach[open_id.member_id].address
        return address.route, open_id, address.as_fields()
    staff = next((a for a in identities if a.owner_userid and a.external_userid), None)
    if staff is not None:
        return (
            "staff_task",
            staff,
            {"owner": staff.owner_userid, "external_userid": staff.external_userid},
        )
    return None


def _expiry(promos: Sequence[Promotion]) -> datetime | None:
    ends = [p.valid_to for p in promos if p.valid_to is not None]
    return min(ends) if ends else None
