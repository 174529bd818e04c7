"""The ``siyu`` command line: chat, serve, ingest, ask, documents, demo, eval, db; and, from
``bot.campaign_cli``, members, campaign, worker, scheduler.

This module, ``bot.campaign_cli`` and ``bot.app`` are the composition root: the only places in
``bot`` that may import ``adapters`` and ``campaigns``. Settings are read here once and passed
down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from aiohttp import web
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from bot import db_cli, report_cli
from bot.app import App
from bot.db import create_engine
from bot.errors import ConfigError, is_unavailable
from bot.ingesting import FileResult, ingest_files
from bot.logs import configure_logging
from bot.schema import upgrade
from bot.settings import Settings
from bot.shutdown import stop_on_signals
from bot.startup import check_data_dir, settings_problems
from knowledge.loaders import MetaOverrides
from knowledge.metadata import parse_datetime
from knowledge.types import Kind

if TYPE_CHECKING:
    from adapters.admission import Admission
    from bot.inbox_recovery import Recovery

cli = typer.Typer(help="Siyu (私域): customer-care bot for retail brands on WeChat / WeCom.")
eval_app = typer.Typer(help="Measure retrieval and answer quality.")
cli.add_typer(eval_app, name="eval")
cli.add_typer(db_cli.db_app, name="db")
cli.command()(report_cli.report)
console = Console()
log = logging.getLogger(__name__)


def _campaign_commands() -> None:
    from bot import campaign_cli

    cli.add_typer(campaign_cli.members_app, name="members")
    cli.add_typer(campaign_cli.campaign_app, name="campaign")
    cli.command()(campaign_cli.worker)
    cli.command()(campaign_cli.scheduler)


T = TypeVar("T")


def _run(factory: Callable[[App], Awaitable[T]], settings: Settings | None = None) -> T:
    """Build the app, run one coroutine with it, always close it."""

    async def main() -> T:
        app = await App.build(settings or Settings())
        try:
            return await factory(app)
        finally:
            await app.close()

    return asyncio.run(main())


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
        console=console, transient=True,
    )  # fmt: skip


async def _ingest_all(
    app: App, paths: list[Path], overrides: MetaOverrides, *, strict: bool = False
) -> int:
    """Ingest ``paths`` (store files first); returns how many were refused.

    Each file has one bar counting its entries (``30/55 entries``) while it loads; when it is
    done the bar gives way to its line, with the same figures (``✓ faq.csv: 55 entries, v2,
    3 embedded, 52 reused``, or ``55 entries, unchanged``) and its warnings under it.
    """
    with _progress() as progress:
        bars: dict[Path, TaskID] = {}

        def bar(path: Path) -> Callable[[int, int], None]:
            task = progress.add_task(path.name, total=None, count="loading…")
            bars[path] = task

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, count=f"{done}/{total} entries")

            return update

        def show(result: FileResult) -> None:
            if result.path in bars:
                progress.remove_task(bars.pop(result.path))
            for line in _result_lines(result):
                progress.console.print(line, soft_wrap=True)

        results = await ingest_files(
            app.knowledge, paths, overrides, progress=bar, done=show, strict=strict
        )
    refused = sum(1 for r in results if r.error is not None)
    warned = sum(len(r.warnings) for r in results)
    counts = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    if refused:
        console.print(f"[red]{refused} of {len(results)} files refused{counts}[/red]")
    elif warned:
        console.print(f"[yellow]{len(results)} files loaded{counts}[/yellow]")
    return refused


def _result_lines(result: FileResult) -> list[str]:
    """A file's line (✓ or ✗) and its warnings under it, as rich markup."""
    r = result.report
    if result.error is not None or r is None:
        return [f"[red]✗ {escape(result.error or 'refused')}[/red]"]
    fresh = f"v{r.version}, {r.embedded} embedded, {r.reused} reused"
    state = "unchanged" if r.unchanged else fresh
    if r.disabled:
        state += f" (disabled: run siyu docs enable {escape(r.doc_id)} to search it)"
    entries = f"{r.chunks} entr{'y' if r.chunks == 1 else 'ies'}"
    lines = [f"✓ {escape(result.path.name)}: {entries}, {state}"]
    return lines + [f"[yellow]  ⚠ {escape(w)}[/yellow]" for w in r.warnings]


@cli.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files to load.")],
    kind: Annotated[Kind | None, typer.Option(help="faq | promotion | product | policy")] = None,
    store: Annotated[str | None, typer.Option(help="Store id; 'all' for every store.")] = None,
    valid_from: Annotated[str | None, typer.Option(help="e.g. 2026-12-01")] = None,
    valid_to: Annotated[str | None, typer.Option(help="e.g. 2026-12-31 (end of day)")] = None,
    tags: Annotated[str | None, typer.Option(help="Comma-separated tags.")] = None,
    strict: Annotated[
        bool, typer.Option(help="Refuse a file with any warning (unused column, skipped row, …).")
    ] = False,
) -> None:
    """Load knowledge files (Markdown, text, CSV/XLSX/JSON tables, PDF, DOCX); exits 1 when any
    file was refused. Warnings (unused columns, skipped rows, a copy of another file) print under
    their file and exit 0, unless --strict."""
    settings = Settings()
    tz = settings.bot.timezone
    overrides = MetaOverrides(
        kind=kind,
        store_id=store,
        valid_from=parse_datetime(valid_from, tz) if valid_from else None,
        valid_to=parse_datetime(valid_to, tz, end_of_day=True) if valid_to else None,
        tags=tuple(t.strip() for t in tags.split(",") if t.strip()) if tags else None,
    )
    refused = _run(lambda app: _ingest_all(app, list(paths), overrides, strict=strict), settings)
    if refused:
        raise typer.Exit(1)


def _docs_commands() -> None:
    """``siyu docs`` (the listing), ``docs show|rm|disable|enable ID``: :mod:`bot.docs_cli`."""
    from bot import docs_cli

    cli.add_typer(docs_cli.docs_app, name="docs")


@cli.command()
def ask(
    question: str,
    store: Annotated[str | None, typer.Option(help="Ask as a member of this store.")] = None,
    at: Annotated[str | None, typer.Option(help="Ask as of this time (default now).")] = None,
) -> None:
    """Show what the bot would answer, with the retrieved entries and their scores."""
    settings = Settings()
    when = parse_datetime(at, settings.bot.timezone) if at else None

    async def show(app: App) -> None:
        result = await app.knowledge.search(question, store_id=store, at=when)
        table = Table("#", "confidence", "score", "by", "source", "text")
        for i, hit in enumerate(result.hits, 1):
            text = hit.chunk.draft.text.replace("\n", " ")[:60]
            table.add_row(
                str(i),
                f"{hit.confidence:.3f}",
                f"{hit.score:.3f}",
                "+".join(hit.matched_by),
                hit.chunk.meta.source,
                text,
            )
        console.print(table)
        console.print(f"threshold {result.threshold:.3f} → found={result.found}")
        answer = await app.preview_answer(question, store_id=store, at=when)
        console.print(f"\n[bold]{settings.bot.name}[/bold]: {answer}")

    _run(show, settings)


@cli.command()
def chat(
    store: Annotated[str | None, typer.Option(help="Chat as a member of this store.")] = None,
) -> None:
    """Talk to the bot in the terminal (Ctrl-D or /quit to leave)."""
    from adapters.console import run_console

    async def talk(app: App) -> None:
        console.print(f"[bold]{app.settings.bot.name}[/bold] 在线。输入问题，/quit 退出。")
        await run_console(app.inbox.handle, store_id=store)

    _run(talk)


def _channel_apps(app: App, admission: Admission) -> list[tuple[str, web.Application]]:
    """The configured channels' sub-applications and the prefix each is mounted under; every
    one answers within the process's one ``admission`` and the server's body limit."""
    from adapters.webhook import create_webhook_app
    from adapters.wecom.app_channel import create_wecom_app_channel
    from adapters.wecom.kf import create_kf_app
    from adapters.wecom.official import create_official_app

    settings, inbox = app.settings, app.inbox
    mounted: list[tuple[str, web.Application]] = []
    wecom, limit = settings.wecom, settings.web.max_body_bytes
    if bridges := settings.webhook.bridges:
        hooks = create_webhook_app(
            inbox.respond, bridges, max_body_bytes=limit, admission=admission,
            responded=inbox.responded,
        )  # fmt: skip
        mounted.append(("/hooks/", hooks))
    shared = {"admission": admission, "max_body_bytes": limit}
    if wecom.kf:
        kf = create_kf_app(
            inbox, wecom.kf, api_base=wecom.api_base, engine=app.engine,
            session_ended=app.pipeline.human_session_ended, **shared,
        )  # fmt: skip
        mounted.append(("/wecom/kf/", kf))
    if wecom.apps:
        apps = create_wecom_app_channel(inbox, wecom.apps, api_base=wecom.api_base, **shared)
        mounted.append(("/wecom/app/", apps))
    if wecom.official_accounts:
        oa = create_official_app(
            inbox, wecom.official_accounts, api_base=wecom.wechat_api_base,
            ledger=app.store.contacts, **shared,
        )  # fmt: skip
        mounted.append(("/wechat/oa/", oa))
    return mounted


def _recovery(
    app: App, admission: Admission, mounted: list[tuple[str, web.Application]]
) -> Recovery:
    """The inbox's recovery loop over the mounted platform channels (not the bridges: they get
    their answers on their retries), answering within the process's one ``admission``."""
    from adapters.wecom.app_channel import APP_CHANNEL
    from adapters.wecom.kf import KF_RUNTIME
    from adapters.wecom.official import OA_CHANNEL
    from bot.inbox_recovery import Recovery

    deliverers = {}
    for _, sub_app in mounted:
        for key in (KF_RUNTIME, APP_CHANNEL, OA_CHANNEL):
            if key in sub_app:
                deliverers.update(sub_app[key].deliverers())
    return Recovery(app.inbox, deliverers, admit=admission.line_up)


def _admission(settings: Settings) -> Admission:
    """The process's one admission: as many answers at once as the kind of answer allows (LLM or
    extractive), and the web server's queue bounds for requests a person waits on."""
    from adapters.admission import Admission, answering_limit

    web_settings = settings.web
    return Admission(
        answering_limit(llm=settings.llm.enabled),
        queue=web_settings.answer_queue,
        wait=web_settings.answer_wait_seconds,
    )


def _channel_urls(settings: Settings, base: str) -> list[str]:
    groups = [
        ("JSON webhook", "hooks", [b.name for b in settings.webhook.bridges]),
        ("WeCom kf", "wecom/kf", [a.name for a in settings.wecom.kf]),
        ("WeCom app", "wecom/app", [a.name for a in settings.wecom.apps]),
        ("Official Account", "wechat/oa", [a.name for a in settings.wecom.official_accounts]),
    ]
    return [
        f"{label} {name}: {base}{path}/{name}" for label, path, names in groups for name in names
    ]


async def _serve(app: App) -> None:
    from adapters.web import CannotListen, create_web_app, serve

    settings = app.settings

    def stores() -> list[tuple[str, str]]:  # asked per request: the directory may be reloaded
        return [(s.store_id, s.name) for s in app.knowledge.catalogue().stores.stores]

    admission = _admission(settings)  # one per process, shared by every channel
    # The web chat has no retries (a lost socket's member writes again, with a new id), so it
    # answers through the pipeline directly; the platform channels and bridges go through the
    # durable inbox, which exists for their retries.
    web_app = create_web_app(
        app.pipeline.handle, settings.web, bot_name=settings.bot.name,
        brand=settings.bot.brand, stores=stores, admission=admission,
        ready=app.readiness().check,
    )  # fmt: skip
    mounted = _channel_apps(app, admission)
    for prefix, sub_app in mounted:
        web_app.add_subapp(prefix, sub_app)
    recovery = _recovery(app, admission, mounted)

    async def start_recovery(_: web.Application) -> None:  # after the channels started
        recovery.start()

    async def stop_recovery(_: web.Application) -> None:  # before they close their clients
        await recovery.stop()

    web_app.on_startup.append(start_recovery)
    web_app.on_shutdown.append(stop_recovery)

    def announce(url: str) -> None:
        console.print(f"Siyu web chat: [bold]{url}[/bold]  (group room: {url}?room=demo)")
        for line in _channel_urls(settings, url):
            console.print(line)
        console.print("Ctrl-C stops.")

    app.settle()
    stop = stop_on_signals()
    try:
        await serve(web_app, settings.web, on_started=announce, stop=stop)
    except CannotListen as exc:
        raise _cannot_listen(exc) from exc
    finally:
        await _give_back(app)


async def _give_back(app: App) -> None:
    """The inbox's leases this process still holds go back to ``pending`` (the server has
    stopped: another process, or this one restarted, answers them at once)."""
    try:
        released = await app.inbox.release()
    except Exception as exc:  # the database is down: the leases run out by themselves
        if not is_unavailable(exc):
            raise
        log.warning("could not give back the inbox's leases (%s); they run out by themselves", exc)
        return
    if released:
        log.info("gave back %d messages to the inbox for another process", released)


def _cannot_listen(exc: Exception) -> ConfigError:
    """The web address is taken or not ours: say which, and which settings move it."""
    return ConfigError(f"{exc}. Set SIYU_WEB_PORT (or SIYU_WEB_HOST) to another address")


def _ready_to_serve(settings: Settings) -> None:
    """Fail fast, before slow start-up work, on a data dir or web address we cannot use."""
    from adapters.web import CannotListen, check_can_listen

    check_data_dir(settings.data_dir)
    try:
        check_can_listen(settings.web)
    except CannotListen as exc:
        raise _cannot_listen(exc) from exc


def start_logging(settings: Settings) -> None:
    """Configure this long-running process's logging from ``SIYU_LOG_*`` (:mod:`bot.logs`)."""
    configure_logging(settings.ops.log_level, json_lines=settings.ops.log_json)


@cli.command()
def serve() -> None:
    """Serve the web chat (1:1 and group rooms), the configured channels, /healthz and /readyz;
    SIGTERM drains (README "Operations")."""
    settings = Settings()
    start_logging(settings)
    _ready_to_serve(settings)
    try:
        _run(_serve, settings)
    except KeyboardInterrupt:
        console.print("stopped")


@cli.command()
def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Load the demo brand's knowledge and serve the web chat (as the demo brand, with its
    sample questions as the page's chips, unless SIYU_BRAND_NAME / SIYU_WEB_SUGGESTIONS say
    otherwise)."""
    from bot.demo import SAMPLE_QUESTIONS, demo_settings, write_current_demo

    settings = demo_settings(Settings())
    start_logging(settings)
    if serve_after:
        _ready_to_serve(settings)
    else:
        check_data_dir(settings.data_dir)
    today = datetime.now(settings.bot.timezone).date()
    # A copy with the promotions' dates moved to this month, so the demo stays current.
    files = write_current_demo(settings.data_dir / "demo-knowledge", today)

    async def main(app: App) -> None:
        await _ingest_all(app, files, MetaOverrides())
        console.print("Try asking: " + " / ".join(SAMPLE_QUESTIONS[:5]))
        if serve_after:
            await _serve(app)

    try:
        _run(main, settings)
    except KeyboardInterrupt:
        console.print("stopped")


@cli.command("robot-send")
def robot_send(
    name: Annotated[str, typer.Argument(help="The robot's name in SIYU_WECOM_ROBOTS.")],
    text: Annotated[str, typer.Argument(help="What to post into the group.")],
    markdown: Annotated[bool, typer.Option(help="Send as markdown (≤ 4096 bytes a part).")] = False,
) -> None:
    """Post a message into a WeCom group through its robot (send-only, ≤ 20 a minute)."""
    import aiohttp

    from adapters.wecom.errors import WeComError
    from adapters.wecom.robot import RobotWebhook

    settings = Settings()
    robot = settings.wecom.robot(name)
    if robot is None:
        known = ", ".join(r.name for r in settings.wecom.robots) or "none configured"
        raise typer.BadParameter(f"no robot named {name!r} (known: {known})")

    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            hook = RobotWebhook(
                session, robot.key.get_secret_value(), base_url=settings.wecom.api_base
            )
            await (hook.send_markdown(text) if markdown else hook.send_text(text))

    try:
        asyncio.run(send())
    except WeComError as exc:
        console.print(f"[red]✗ {exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"✓ posted to {name}")


@eval_app.command("retrieval")
def eval_retrieval(
    faq: Annotated[Path, typer.Option(exists=True, help="faq.jsonl {faq_id, faq_question}")],
    queries: Annotated[Path, typer.Option(exists=True, help="queries.jsonl {query, faq_id}")],
    limit: Annotated[int | None, typer.Option(help="Use only the first N queries.")] = None,
) -> None:
    """Print recall@1/5/10 and MRR@10 (fused, dense-only, keyword-only) as JSON."""
    from knowledge.evaluation import evaluate_retrieval

    settings = Settings()

    async def run() -> dict[str, Any]:
        # A throw-away database at the newest revision: the evaluation never touches ours.
        with tempfile.TemporaryDirectory(prefix="siyu-eval-db-") as tmp:
            engine = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'eval.db'}")
            try:
                await upgrade(engine)
                config = settings.knowledge.config(settings.data_dir)
                return await evaluate_retrieval(faq, queries, config, engine, limit=limit)
            finally:
                await engine.dispose()

    typer.echo(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))


@eval_app.command("answers")
def eval_answers(
    kb: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Knowledge files.")],
    questions: Annotated[Path, typer.Option(exists=True, help="questions.jsonl")],
    llm: Annotated[bool, typer.Option(help="Answer with the configured LLM.")] = False,
    today: Annotated[
        str | None, typer.Option(help="Ask at noon of this day (default now).")
    ] = None,
) -> None:
    """Load --kb into a temporary data dir, answer every question, print pass rates as JSON."""
    from bot.answer_eval import evaluate_answers

    settings = Settings()
    at = parse_datetime(f"{today} 12:00", settings.bot.timezone) if today else None
    report = asyncio.run(evaluate_answers(kb, questions, settings, llm=llm, at=at))
    typer.echo(json.dumps(report, ensure_ascii=False, indent=2))


def main() -> None:
    """Console-script entry point: start-up problems a user can fix (a bad setting, an unwritable
    data dir, a busy port) end in one line each and exit status 2 (see :mod:`bot.startup`)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cli()
    except (ValidationError, SettingsError) as exc:
        _fail(["invalid settings:", *(f"  {line}" for line in settings_problems(exc))])
    except ConfigError as exc:
        _fail([str(exc)])


def _fail(lines: list[str]) -> NoReturn:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for line in lines:
        err.print(f"siyu: {line}", markup=False)
    raise SystemExit(2)


_campaign_commands()
_docs_commands()
