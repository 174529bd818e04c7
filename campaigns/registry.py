"""Stored campaigns: create, find, list, and the daily-deals campaigns named in the settings.

``SIYU_DAILY_DEALS`` entries become campaigns named ``daily-deals:<store>`` (``daily-deals:all``
for a chain-wide one), created or updated when the scheduler or ``siyu campaign`` starts, so
the settings stay the source of truth for them; campaigns created in the console or with
``siyu campaign create`` live only in the table.
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
    if cron is not None:
        try:
            parse_cron(cron, ZoneInfo("UTC"))  # the timezone does not change what is valid
        except ValueError as exc:
            raise CampaignError(f"cron {cron!r}: {exc}") from None
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
        raise CampaignError(f"a campaign named {name!r} already exists") from None
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


async def sync_daily_deals(
    engine: AsyncEngine, specs: Sequence[DailyDeals], *, now: datetime
) -> list[Campaign]:
    """Create or update the settings' daily-deals campaigns; they are returned."""
    out = []
    for spec in specs:
        name = daily_deals_name(spec.store_id)
        options = {"groups": list(spec.groups)}
        async with engine.begin() as conn:
            updated = await conn.execute(
                CAMPAIGNS.update()
                .where(CAMPAIGNS.c.name == name)
                .values(kind="daily_deals", store_id=spec.store_id, cron=spec.cron, options=options)
            )
        if updated.rowcount == 0:
            with contextlib.suppress(CampaignError):  # another process created it meanwhile
                await create_campaign(
                    engine, name=name, kind="daily_deals", now=now, store_id=spec.store_id,
                    cron=spec.cron, options=options,
                )  # fmt: skip
        out.append(await get_campaign(engine, name))
    return out
