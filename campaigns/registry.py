"""Stored campaigns: create, find, list, and the daily-deals campaigns named in the settings.

``SIYU_DAILY_DEALS`` entries become campaigns named ``daily-deals:<store>`` (``daily-deals:all``
for a chain-wide one), created or updated by the commands that write (``siyu scheduler``,
``siyu campaign create`` / ``run``), so the settings stay the source of truth for them; a
preview reads the settings' definition unsaved (:func:`daily_deals_definitions`) and writes
nothing. Campaigns created in the console or with ``siyu campaign create`` live only in the table.

Every cron is checked on the way in, on create and on update alike: a bad one is a
:class:`CampaignError` naming the cron, never a stored campaign the scheduler later ignores.
Two processes creating the same daily-deals campaign at once is the one error tolerated, and
it is recognised by the unique name (:class:`CampaignExists`), not by any :class:`CampaignError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.models import require_aware
from campaigns.config import DailyDeals
from campaigns.models import Campaign, CampaignRun
from campaigns.scheduler import parse_cron

CAMPAIGNS = Campaign.__table__  # type: ignore[attr-defined]
RUNS = CampaignRun.__table__  # type: ignore[attr-defined]
KINDS = ("daily_deals", "reengage")


class CampaignError(ValueError):
    """A campaign that does not exist, or one that cannot be created as asked."""


class CampaignExists(CampaignError):
    """A campaign with this name is stored already (the table's unique name said so)."""


def check_cron(cron: str | None) -> None:
    """:class:`CampaignError` naming ``cron`` unless it is None or a cron the scheduler runs."""
    if cron is None:
        return
    try:
        parse_cron(cron, ZoneInfo("UTC"))  # the timezone does not change what is valid
    except ValueError as exc:
        raise CampaignError(f"cron {cron!r} is not valid: {exc}") from None


def daily_deals_name(store_id: str | None) -> str:
    return f"daily-deals:{store_id or 'all'}"


async def create_campaign(
    engine: AsyncEngine,
    *,
    name: str,
    kind: str,
    now: datetime,
    store_id: str | None = None,
    cron: str | None = None,
    options: dict[str, Any] | None = None,
) -> Campaign:
    """Store a new campaign; :class:`CampaignError` for a taken name or an unknown kind."""
    require_aware(now)
    if kind not in KINDS:
        raise CampaignError(f"kind must be one of {KINDS}, got {kind!r}")
    if not name.strip() or len(name) > 128:
        raise CampaignError("a campaign name is 1 to 128 characters")
    check_cron(cron)
    values = {
        "name": name, "kind": kind, "store_id": store_id, "cron": cron,
        "options": options or {}, "enabled": True, "created_at": now,
    }  # fmt: skip
    try:
        async with engine.begin() as conn:
            new_id = (
                await conn.execute(CAMPAIGNS.insert().values(values).returning(CAMPAIGNS.c.id))
            ).scalar_one()
    except sa.exc.IntegrityError:
        raise CampaignExists(f"a campaign named {name!r} already exists") from None
    return Campaign.model_validate({**values, "id": int(new_id)})


async def get_campaign(engine: AsyncEngine, name: str) -> Campaign:
    """The campaign named ``name``; :class:`CampaignError` if there is none."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(CAMPAIGNS).where(CAMPAIGNS.c.name == name))).first()
    if row is None:
        raise CampaignError(f"no campaign named {name!r}")
    return Campaign.model_validate(dict(row._mapping))


async def get_campaign_by_id(engine: AsyncEngine, campaign_id: int) -> Campaign | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(CAMPAIGNS).where(CAMPAIGNS.c.id == campaign_id))
        ).first()
    return None if row is None else Campaign.model_validate(dict(row._mapping))


async def list_campaigns(engine: AsyncEngine) -> list[Campaign]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(CAMPAIGNS).order_by(CAMPAIGNS.c.name))
        return [Campaign.model_validate(dict(r._mapping)) for r in rows]


async def runs_of(engine: AsyncEngine, campaign_id: int) -> list[CampaignRun]:
    """The campaign's runs, newest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(RUNS).where(RUNS.c.campaign_id == campaign_id).order_by(RUNS.c.id.desc())
        )
        return [CampaignRun.model_validate(dict(r._mapping)) for r in rows]


def daily_deals_definitions(specs: Sequence[DailyDeals], *, now: datetime) -> list[Campaign]:
    """The settings' daily-deals campaigns as unsaved :class:`Campaign` values (no id); a
    :class:`CampaignError` names the first bad cron."""
    out = []
    for spec in specs:
        check_cron(spec.cron)
        out.append(
            Campaign(
                name=daily_deals_name(spec.store_id), kind="daily_deals", store_id=spec.store_id,
                cron=spec.cron, options=_daily_deals_options(spec), enabled=True, created_at=now,
            )
        )  # fmt: skip
    return out


async def sync_daily_deals(
    engine: AsyncEngine, specs: Sequence[DailyDeals], *, now: datetime
) -> list[Campaign]:
    """Create or update the settings' daily-deals campaigns; they are returned. Every cron is
    checked before anything is written."""
    out = []
    for wanted in daily_deals_definitions(specs, now=now):
        async with engine.begin() as conn:
            updated = await conn.execute(
                CAMPAIGNS.update()
                .where(CAMPAIGNS.c.name == wanted.name)
                .values(
                    kind="daily_deals", store_id=wanted.store_id, cron=wanted.cron,
                    options=wanted.options,
                )
            )  # fmt: skip
        if updated.rowcount == 0:
            # Another process may have created it meanwhile: only that is tolerated.
            with contextlib.suppress(CampaignExists):
                await create_campaign(
                    engine, name=wanted.name, kind="daily_deals", now=now,
                    store_id=wanted.store_id, cron=wanted.cron, options=wanted.options,
                )  # fmt: skip
        out.append(await get_campaign(engine, wanted.name))
    return out


def _daily_deals_options(spec: DailyDeals) -> dict[str, Any]:
    return {"groups": list(spec.groups), "bridge_groups": list(spec.bridge_groups)}
