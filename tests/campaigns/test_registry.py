"""Stored campaigns: a bad cron is refused on create and on update (naming the cron), and two
processes creating the settings' daily-deals campaign at once end with one campaign."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.config import DailyDeals
from campaigns.registry import (
    CampaignError,
    CampaignExists,
    create_campaign,
    get_campaign,
    list_campaigns,
    sync_daily_deals,
)
from tests.campaigns.conftest import T0


async def test_a_bad_cron_is_refused_on_create(engine: AsyncEngine) -> None:
    with pytest.raises(CampaignError, match=r"cron '61 9 \* \* \*' is not valid"):
        await create_campaign(engine, name="x", kind="reengage", now=T0, cron="61 9 * * *")
    assert await list_campaigns(engine) == []


async def test_a_bad_cron_is_refused_on_update_and_nothing_changes(engine: AsyncEngine) -> None:
    (stored,) = await sync_daily_deals(
        engine, [DailyDeals(store_id="s1", cron="0 9 * * *")], now=T0
    )
    bad = [DailyDeals(store_id="s1", cron="0 9 * * 1-9", groups=["g1"])]
    with pytest.raises(CampaignError, match=r"cron '0 9 \* \* 1-9' is not valid"):
        await sync_daily_deals(engine, bad, now=T0)
    again = await get_campaign(engine, "daily-deals:s1")
    assert (again.cron, again.options) == ("0 9 * * *", {"groups": [], "bridge_groups": []})
    assert again.id == stored.id


async def test_a_bad_cron_for_a_new_daily_deal_is_not_hidden(engine: AsyncEngine) -> None:
    # Before, the create's error was suppressed and the caller read "no campaign named …".
    with pytest.raises(CampaignError, match="cron 'every day' is not valid"):
        await sync_daily_deals(engine, [DailyDeals(store_id="s2", cron="every day")], now=T0)
    assert await list_campaigns(engine) == []


async def test_a_taken_name_is_campaign_exists(engine: AsyncEngine) -> None:
    await create_campaign(engine, name="winback", kind="reengage", now=T0)
    with pytest.raises(CampaignExists, match="'winback' already exists"):
        await create_campaign(engine, name="winback", kind="reengage", now=T0)


async def test_concurrent_syncs_store_one_campaign(engine: AsyncEngine) -> None:
    specs = [
        DailyDeals(store_id="s1", cron="30 8 * * *", groups=["g1"], bridge_groups=["b:room-1"])
    ]
    results = await asyncio.gather(*(sync_daily_deals(engine, specs, now=T0) for _ in range(4)))
    ids = {campaigns[0].id for campaigns in results}
    (stored,) = await list_campaigns(engine)
    assert ids == {stored.id}
    assert (stored.name, stored.cron, stored.options) == (
        "daily-deals:s1", "30 8 * * *", {"groups": ["g1"], "bridge_groups": ["b:room-1"]},
    )  # fmt: skip
