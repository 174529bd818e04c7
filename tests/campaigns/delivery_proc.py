"""A delivery worker process for the crash-safety tests and the fan-out bench, and their handle
on it.

Run as ``python -m tests.campaigns.delivery_proc --db URL --api BASE --owner w1 --lease 2``: it
builds the engine, a :func:`~adapters.wecom.outbound.platform_sender` over one kf account
``main`` and one plain-mode Official Account ``oa1`` (the fake platform's default credentials),
and a :class:`~campaigns.worker.DeliveryWorker` with quiet hours off; prints ``ready`` once it
can send, drains until no ``pending`` row is left (waiting, when nothing is due, for the leases of
rows a killed worker held to run out), then prints one JSON line ``{"handled", "cpu_seconds"}``
and exits 0.

Decisions:

- The schema is the test's (or the bench's) to create: a worker that is killed and restarted must
  never race a ``CREATE TABLE``.
- ``--die-after-attempt`` wraps the sender so the process ``os._exit(9)`` right after the platform
  accepted the first send: the attempt is committed, ``sent`` is not. That is the crash a random
  SIGKILL hits only by luck, made deterministic for the non-idempotent route's test.
- ``ready`` is printed after the imports and the sender are built, so a test that kills "at a
  random point of the delivery" can count from it rather than from a process start whose import
  time depends on the machine's load.
- ``cpu_seconds`` is the process's own user + system time (``time.process_time``), which the
  bench reports per worker.

:class:`DeliveryProc` (test and bench side) starts one with the running interpreter in the
repository root, stderr to a log file, and kills it with SIGKILL; callers call
:meth:`DeliveryProc.kill` in ``finally`` so no process outlives them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

import campaigns.models  # noqa: F401  (registers the campaigns' tables)
from adapters.wecom.config import KfAccount, OfficialAccountConfig, WeComSettings
from adapters.wecom.outbound import platform_sender
from bot.db import create_engine
from bot.types import Outbound, OutboundSender
from campaigns.config import CampaignsConfig, RateLimits
from campaigns.outbox import Outbox
from campaigns.worker import DeliveryWorker

REPO = Path(__file__).resolve().parents[2]
KF_ACCOUNT = "main"
OA_ACCOUNT = "oa1"
DIED_EXIT_CODE = 9
# The fake platform's default credentials (tests.fakes.wecom_server.FakePlatform).
CORP_ID, CORP_SECRET = "wwfakecorp", "corp-secret"
OA_APP_ID, OA_SECRET = "wxfakeoa", "oa-secret"


@dataclass(frozen=True)
class DieAfterAccepted:
    """A sender that ends the process right after the platform accepted one send."""

    inner: OutboundSender

    async def send(self, message: Outbound, /) -> str:
        await self.inner.send(message)
        os._exit(DIED_EXIT_CODE)  # no clean-up, like a crash: "sent" is never recorded


def worker_config(*, lease_seconds: float, kf_per_minute: float) -> CampaignsConfig:
    """Quiet hours off (the tests run at any hour), the given lease and kf rate."""
    rates = RateLimits(kf_per_minute=kf_per_minute, oa_per_minute=100_000.0)
    return CampaignsConfig(
        quiet_start=clock_time(0), quiet_end=clock_time(0), rates=rates,
        lease_seconds=lease_seconds,
    )  # fmt: skip


def accounts() -> tuple[KfAccount, OfficialAccountConfig]:
    """The kf account and the Official Account the worker sends through."""
    kf = KfAccount(
        name=KF_ACCOUNT, token=SecretStr("kf-token"),
        encoding_aes_key=SecretStr("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"),
        corp_id=CORP_ID, secret=SecretStr(CORP_SECRET),
    )  # fmt: skip
    oa = OfficialAccountConfig(
        name=OA_ACCOUNT, token=SecretStr("oa-token"), app_id=OA_APP_ID,
        secret=SecretStr(OA_SECRET), mode="plain",
    )  # fmt: skip
    return kf, oa


async def deliver(worker: DeliveryWorker, outbox: Outbox, *, idle_seconds: float) -> int:
    """Drain until no row is pending; the rows this worker handled."""
    handled = 0
    while True:
        done = await worker.drain()
        handled += done
        if await outbox.pending() == 0:
            return handled
        if not done:  # the rest is leased by another (or a killed) worker, or deferred
            await asyncio.sleep(idle_seconds)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(args.db)
    kf, oa = accounts()
    config = worker_config(lease_seconds=args.lease, kf_per_minute=args.rate)
    try:
        wecom = WeComSettings(
            _env_file=None, kf=[kf], official_accounts=[oa], api_base=args.api,
            wechat_api_base=args.api,
        )  # fmt: skip
        async with platform_sender(wecom) as platform:
            sender: OutboundSender = (
                DieAfterAccepted(platform) if args.die_after_attempt else platform
            )
            worker = DeliveryWorker(
                engine, sender, config, owner=args.owner, batch=args.batch,
                idle_seconds=args.idle,
            )  # fmt: skip
            print("ready", flush=True)
            handled = await deliver(worker, worker.outbox, idle_seconds=args.idle)
    finally:
        await engine.dispose()
    return {"owner": args.owner, "handled": handled, "cpu_seconds": time.process_time()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="delivery_proc")
    parser.add_argument("--db", required=True, help="the database URL")
    parser.add_argument("--api", required=True, help="the fake platform's base URL")
    parser.add_argument("--owner", required=True, help="this worker's lease owner name")
    parser.add_argument("--lease", type=float, default=2.0, help="lease seconds")
    parser.add_argument("--batch", type=int, default=10, help="rows claimed at a time")
    parser.add_argument("--rate", type=float, default=100_000.0, help="kf sends per minute")
    parser.add_argument("--idle", type=float, default=0.1, help="poll seconds when idle")
    parser.add_argument("--die-after-attempt", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


class DeliveryProc:
    """A ``delivery_proc`` subprocess seen from a test or a bench."""

    def __init__(self, proc: asyncio.subprocess.Process, owner: str) -> None:
        self.proc = proc
        self.owner = owner

    @classmethod
    async def start(
        cls, db: str, api: str, owner: str, log_dir: Path, *options: str
    ) -> DeliveryProc:
        with (log_dir / f"{owner}.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.campaigns.delivery_proc", "--db", db, "--api", api,
                "--owner", owner, *options,
                cwd=REPO, env=dict(os.environ), stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        return cls(proc, owner)

    async def ready(self, within: float) -> bool:
        """Whether the process prints ``ready`` within ``within`` seconds."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            return False
        return line.decode().strip() == "ready"

    async def finish(self, within: float) -> dict[str, Any]:
        """Wait for a clean exit; the summary line it printed. AssertionError otherwise."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                out = await self.proc.stdout.read()
                code = await self.proc.wait()
        except TimeoutError:
            raise AssertionError(f"worker {self.owner} did not finish in {within} s") from None
        assert code == 0, f"worker {self.owner} exited {code}: {out!r}"
        summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return summary

    async def kill(self) -> None:
        """SIGKILL (no clean-up in the child: the point of the tests) and reap."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


if __name__ == "__main__":
    main()
