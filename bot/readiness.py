"""Readiness: whether this process should be sent work now (``GET /readyz``).

``/healthz`` says the process is alive (its event loop answers); readiness says it can do its
job: a load balancer or an orchestrator takes a process that is not ready out of rotation and
sends its traffic to the others, without restarting it. :class:`Readiness` runs its checks
together, each bounded by ``check_timeout`` (:class:`bot.config.ReadinessConfig`), so the answer
comes within that time even when a dependency hangs rather than refuses:

- ``database``: ``SELECT 1`` on the engine's pool;
- ``knowledge``: the vector store answers a count (:meth:`knowledge.base.KnowledgeBase.ping`);
- ``inbox_lag``: the oldest message still waiting for an answer (``pending`` or ``answering`` in
  the durable inbox, :meth:`bot.inbox.Inbox.waiting`) is younger than ``max_inbox_lag``.
  Decision: the lag, not the count: a burst that is being worked through is fine, a message left
  waiting for a minute means answering has stalled (a dependency, or every process is stuck).

A check passes by returning a short detail (``"1 waiting, oldest 0.4 s"``) and fails by raising;
the report names each failing check with the reason, never a traceback. While the process drains
after SIGTERM the web adapter answers "not ready" without asking (``adapters.web.server``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import ReadinessConfig
from bot.inbox import Inbox

Probe = Callable[[], Awaitable[str]]
"""One check: returns a short detail when it passes, raises when it fails."""


class NotReady(Exception):
    """A check ran and found the process not fit for work (the message says why)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``ok`` and a one-line ``detail`` (the reason when it failed)."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Report:
    """Every check's outcome, in the order they were registered."""

    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    def as_json(self) -> dict[str, Any]:
        """``{"status": "ready", "checks": {...}}`` or ``{"status": "not ready", "failing":
        [...], "checks": {...}}``; each check as ``{"ok": bool, "detail": str}``."""
        checks = {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}
        if self.ready:
            return {"status": "ready", "checks": checks}
        return {"status": "not ready", "failing": self.failing, "checks": checks}


class Readiness:
    """Named probes, each run within ``timeout`` seconds, all at once."""

    def __init__(self, probes: Mapping[str, Probe], *, timeout: float) -> None:
        self._probes = dict(probes)
        self._timeout = timeout

    async def check(self) -> Report:
        """Run every probe; never raises (a probe's failure is its check's detail)."""
        names = list(self._probes)
        outcomes = await asyncio.gather(*(self._run(name) for name in names))
        return Report(tuple(outcomes))

    async def _run(self, name: str) -> Check:
        try:
            async with asyncio.timeout(self._timeout):
                detail = await self._probes[name]()
        except TimeoutError:
            return Check(name, False, f"no answer within {self._timeout:g} s")
        except Exception as exc:  # a failed check is an answer, not an error of /readyz
            return Check(name, False, _reason(exc))
        return Check(name, True, detail)


def _reason(exc: Exception) -> str:
    if isinstance(exc, NotReady):
        return str(exc)
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def database_probe(engine: AsyncEngine) -> Probe:
    """``SELECT 1`` through the engine's pool."""

    async def probe() -> str:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return "ok"

    return probe


def knowledge_probe(ping: Callable[[], Awaitable[int]]) -> Probe:
    """The vector store answers ``ping`` (how many entries it holds)."""

    async def probe() -> str:
        return f"{await ping()} entries"

    return probe


def inbox_probe(inbox: Inbox, max_lag: float) -> Probe:
    """The oldest message waiting for an answer has waited less than ``max_lag`` seconds."""

    async def probe() -> str:
        count, oldest = await inbox.waiting()
        lag = oldest.total_seconds()
        detail = f"{count} waiting, oldest {lag:.1f} s"
        if lag > max_lag:
            raise NotReady(f"{detail} (more than {max_lag:g} s)")
        return detail

    return probe


def readiness(
    engine: AsyncEngine, ping: Callable[[], Awaitable[int]], inbox: Inbox, config: ReadinessConfig
) -> Readiness:
    """The checks of a ``siyu serve`` process (the module docstring lists them)."""
    probes = {
        "database": database_probe(engine),
        "knowledge": knowledge_probe(ping),
        "inbox_lag": inbox_probe(inbox, config.max_inbox_lag),
    }
    return Readiness(probes, timeout=config.check_timeout)
