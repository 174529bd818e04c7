"""``siyu members …``, ``siyu campaign …``, ``siyu worker`` and ``siyu scheduler``.

Part of the composition root (with ``bot.cli`` and ``bot.app``): it wires the campaigns'
planner, worker and scheduler to the adapters' platform sender. Processes:

- ``siyu scheduler``: waits to become the one scheduler leader, then fires each campaign's cron
  (plan only: rows go to the outbox) and prunes old rows daily (``SIYU_RETENTION_*``,
  :mod:`campaigns.retention`). Run one or more (the others stand by).
- ``siyu worker``: drains the outbox through the platforms, obeying the delivery policy and the
  shared rate limits. Run as many as the platforms' limits justify.
- ``siyu campaign run NAME``: plans now and, unless ``--no-deliver``, drains what is due in the
  foreground (rows deferred to the morning stay for a worker).

The settings' daily-deals campaigns (``SIYU_DAILY_DEALS``) are stored by the commands that
write (``campaign create``, ``campaign run``, ``scheduler``); ``campaign preview`` writes
nothing, and previews a daily-deals campaign from its settings' definition, stored or not.
A command that refuses anything (a bad cron among them) exits 1 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.app import App, campaigns_config
from bot.clock import utc_now
from bot.logs import configure_logging
from bot.settings import Settings
from bot.shutdown import stop_on_signals, until_stopped
from campaigns.copy import CopyWriter
from campaigns.members import ImportFileError, import_members
from campaigns.models import Campaign
from campaigns.planner import Planner, PlanReport
from campaigns.registry import (
    CampaignError,
    create_campaign,
    daily_deals_definitions,
    get_campaign,
    get_campaign_by_id,
    list_campaigns,
    runs_of,
    sync_daily_deals,
)
from campaigns.reports import reactivation, run_counts
from campaigns.worker import DeliveryWorker

members_app = typer.Typer(help="Import and inspect members.")
campaign_app = typer.Typer(help="Plan, run and report campaigns.")
console = Console()

MAX_IMPORT_BYTES = 200 * 1024 * 1024


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _run_key(now: datetime) -> str:
    return "manual:" + now.strftime("%Y-%m-%dT%H:%M:%S")


@asynccontextmanager
async def _app(settings: Settings | None = None) -> AsyncIterator[App]:
    app = await App.build(settings or Settings())
    try:
        yield app
    finally:
        await app.close()


async def _sync_settings(app: App) -> None:
    """Store the settings' daily-deals campaigns (only commands that write call this)."""
    await sync_daily_deals(app.engine, app.settings.campaigns.daily_deals, now=utc_now())


async def _previewed(app: App, name: str) -> Campaign:
    """The campaign a preview plans: the settings' daily-deals definition of that name (what
    the next write would store), else the stored campaign."""
    for wanted in daily_deals_definitions(app.settings.campaigns.daily_deals, now=utc_now()):
        if wanted.name == name:
            return wanted
    return await get_campaign(app.engine, name)


@asynccontextmanager
async def _planner(app: App) -> AsyncIterator[Planner]:
    config = campaigns_config(app.settings)
    copy = CopyWriter(
        config, app.settings.llm.config(), brand=app.settings.bot.brand, breaker=app.llm_breaker
    )
    try:
        yield Planner(app.engine, app.knowledge, copy, config)
    finally:
        await copy.aclose()


@asynccontextmanager
async def _worker(app: App, owner: str) -> AsyncIterator[DeliveryWorker]:
    from adapters.wecom.outbound import platform_sender

    settings = app.settings
    async with platform_sender(settings.wecom, bridges=settings.webhook.bridges) as sender:
        yield DeliveryWorker(app.engine, sender, campaigns_config(settings), owner=owner)


def _long_running() -> Settings:
    """The settings of a long-running command, its logging configured from them."""
    settings = Settings()
    configure_logging(settings.ops.log_level, json_lines=settings.ops.log_json)
    return settings


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]✗ {message}[/red]")
    return typer.Exit(1)


# --- members --------------------------------------------------------------------------------


@members_app.command("import")
def members_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV file.")],
) -> None:
    """Import members from CSV (UTF-8 or GB18030); rejected rows are listed with the reason."""
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise _fail(f"{path} is larger than {MAX_IMPORT_BYTES // 1024 // 1024} MB")
    data = path.read_bytes()

    async def main() -> None:
        async with _app() as app:
            tz = app.settings.bot.timezone
            report = await import_members(app.engine, data, now=utc_now(), tz=tz)
        console.print(f"✓ {report.created} created, {report.updated} updated, "
                      f"{len(report.rejected)} rejected")  # fmt: skip
        for rejected in report.rejected[:50]:
            console.print(f"  line {rejected.line}: {rejected.reason}")
        if len(report.rejected) > 50:
            console.print(f"  … and {len(report.rejected) - 50} more")

    try:
        asyncio.run(main())
    except ImportFileError as exc:
        raise _fail(str(exc)) from None


# --- campaigns ------------------------------------------------------------------------------


@campaign_app.command("create")
def campaign_create(
    name: str,
    kind: Annotated[str, typer.Option(help="daily_deals | reengage")],
    store: Annotated[str | None, typer.Option(help="Store id (daily deals: whose deals).")] = None,
    cron: Annotated[str | None, typer.Option(help='e.g. "0 9 * * *" (brand timezone).')] = None,
    groups: Annotated[
        str | None, typer.Option(help="Robot names to post to, comma-separated.")
    ] = None,
    bridge_groups: Annotated[
        str | None, typer.Option(help="Bridge conversations to push to, bridge:conversation,…")
    ] = None,
    segments: Annotated[str | None, typer.Option(help="Re-engagement segments.")] = None,
    cooldown_days: Annotated[int | None, typer.Option(help="Re-engagement cooldown.")] = None,
) -> None:
    """Create a campaign (runs on its cron under `siyu scheduler`, or by `campaign run`)."""
    options: dict[str, object] = {}
    if groups:
        options["groups"] = [g.strip() for g in groups.split(",") if g.strip()]
    if bridge_groups:
        options["bridge_groups"] = [g.strip() for g in bridge_groups.split(",") if g.strip()]
    if segments:
        options["segments"] = [s.strip() for s in segments.split(",") if s.strip()]
    if cooldown_days is not None:
        options["cooldown_days"] = cooldown_days

    async def main() -> None:
        async with _app() as app:
            await _sync_settings(app)
            await create_campaign(
                app.engine, name=name, kind=kind, now=utc_now(), store_id=store, cron=cron,
                options=options,
            )  # fmt: skip

    try:
        asyncio.run(main())
    except CampaignError as exc:
        raise _fail(str(exc)) from None
    console.print(f"✓ campaign {name} created")


@campaign_app.command("list")
def campaign_list() -> None:
    """List the campaigns: the stored ones, and the settings' daily deals as the next write
    will store them ("stored" says whether the table has them yet)."""

    async def main() -> list[tuple[Campaign, bool]]:
        async with _app() as app:
            stored = {c.name: c for c in await list_campaigns(app.engine)}
            settings = daily_deals_definitions(app.settings.campaigns.daily_deals, now=utc_now())
            merged = {**stored, **{c.name: c for c in settings}}
            return [(merged[name], name in stored) for name in sorted(merged)]

    try:
        campaigns = asyncio.run(main())
    except CampaignError as exc:
        raise _fail(str(exc)) from None
    table = Table("name", "kind", "store", "cron", "options", "stored")
    for c, stored in campaigns:
        options = json.dumps(c.options, ensure_ascii=False)
        row = (c.name, c.kind, c.store_id or "all", c.cron or "-", options)
        table.add_row(*row, "yes" if stored else "not yet")
    console.print(table)


def _print_plan(report: PlanReport) -> None:
    console.print(f"[bold]{report.campaign}[/bold] run {report.run_key}"
                  + (f" (#{report.run_id})" if report.run_id else ""))  # fmt: skip
    console.print(f"promotions: {', '.join(report.promotions) or 'none'}")
    console.print(f"messages planned: {report.planned} {dict(report.by_route)}")
    if report.by_segment:
        console.print(f"by segment: {dict(report.by_segment)}")
    if report.not_planned:
        console.print(f"not planned: {dict(report.not_planned)}")
    for note in report.notes:
        console.print(f"note: {note}")
    for variant, text in report.samples.items():
        console.print(f"\n[dim]{variant}[/dim]\n{text}")


@campaign_app.command("preview")
def campaign_preview(name: str) -> None:
    """Show who would get what, through which route, without writing anything."""

    async def main() -> PlanReport:
        async with _app() as app, _planner(app) as planner:
            campaign = await _previewed(app, name)
            now = utc_now()
            return await planner.plan(campaign, now=now, run_key=_run_key(now), write=False)

    try:
        _print_plan(asyncio.run(main()))
    except (CampaignError, ValueError) as exc:
        raise _fail(str(exc)) from None


@campaign_app.command("run")
def campaign_run(
    name: str,
    deliver: Annotated[bool, typer.Option("--deliver/--no-deliver")] = True,
) -> None:
    """Plan a run now; deliver what is due now unless --no-deliver (a worker does the rest)."""

    async def main() -> None:
        async with _app() as app:
            await _sync_settings(app)
            async with _planner(app) as planner:
                campaign = await get_campaign(app.engine, name)
                now = utc_now()
                report = await planner.plan(campaign, now=now, run_key=_run_key(now))
            _print_plan(report)
            if deliver and report.run_id is not None:
                async with _worker(app, _owner()) as worker:
                    handled = await worker.drain()
                console.print(f"\ndelivered: {handled} rows handled")
                console.print(await run_counts(app.engine, report.run_id))

    try:
        asyncio.run(main())
    except (CampaignError, ValueError) as exc:
        raise _fail(str(exc)) from None


@campaign_app.command("report")
def campaign_report(
    name: str,
    run: Annotated[int | None, typer.Option(help="A run id (default: the latest).")] = None,
) -> None:
    """Counts by state and reason, and reactivation within 72 h per segment and variant."""

    async def main() -> None:
        async with _app() as app:
            campaign = await get_campaign(app.engine, name)
            runs = await runs_of(app.engine, campaign.id or 0)
            chosen = [r for r in runs if run is None or r.id == run][:1]
            if not chosen:
                raise CampaignError(f"{name} has no run {run or ''}".strip())
            r = chosen[0]
            console.print(f"[bold]{name}[/bold] run #{r.id} {r.run_key} ({r.state})")
            console.print(await run_counts(app.engine, r.id or 0))
            table = Table("segment", "variant", "sent", "wrote back ≤72h", "rate")
            for line in await reactivation(app.engine, r.id or 0):
                table.add_row(line.segment, line.variant, str(line.sent),
                              str(line.reactivated), f"{line.rate:.1%}")  # fmt: skip
            console.print(table)

    try:
        asyncio.run(main())
    except CampaignError as exc:
        raise _fail(str(exc)) from None


# --- long-running processes -----------------------------------------------------------------


def worker() -> None:
    """Deliver outbox messages until stopped (run several for more throughput). A database
    outage is waited out; SIGTERM finishes the send in hand and gives back the rest."""
    settings = _long_running()

    async def main() -> None:
        async with _app(settings) as app, _worker(app, _owner()) as delivery:
            app.settle()
            stop = stop_on_signals()
            console.print(f"worker {_owner()} delivering; Ctrl-C stops")
            await delivery.run(stop)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C during start-up, before the handlers
        asyncio.run(main())
    console.print("stopped")


def scheduler() -> None:
    """Fire campaigns on their cron while this process is the scheduler leader. A database
    outage is waited out (leadership is elected again); SIGTERM releases the leadership."""
    from campaigns.retention import prune, summary
    from campaigns.scheduler import CampaignScheduler

    settings = _long_running()

    async def main() -> None:
        async with _app(settings) as app, _planner(app) as planner:
            await _sync_settings(app)

            async def fire(campaign_id: int, run_key: str) -> str:
                campaign = await get_campaign_by_id(app.engine, campaign_id)
                if campaign is None or not campaign.enabled:
                    return "campaign gone or disabled"
                report = await planner.plan(campaign, now=utc_now(), run_key=run_key)
                return f"planned {report.planned}, added {report.added}"

            retention = campaigns_config(app.settings).retention

            async def maintain() -> str:
                return summary(await prune(app.engine, retention, now=utc_now()))

            tz = app.settings.bot.timezone
            url = app.settings.resolved_database_url
            runner = CampaignScheduler(
                app.engine, url, fire, tz=tz, owner=_owner(), maintenance=maintain,
                maintenance_cron=retention.cron,
            )  # fmt: skip
            stop = stop_on_signals()
            console.print(f"scheduler {_owner()} waiting for leadership; Ctrl-C stops")
            await until_stopped(runner.run(), stop)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C during start-up, before the handlers
        pass
    except (CampaignError, ValueError) as exc:  # a bad cron in the settings
        raise _fail(str(exc)) from None
    console.print("stopped")
