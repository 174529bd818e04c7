"""A scheduler process for the leader and scheduler tests, and the tests' handle on it.

Run as ``python -m tests.campaigns.scheduler_proc <database url> <owner> [options]``: it builds the
engine, creates the schema and runs :class:`~campaigns.scheduler.CampaignScheduler` with a ``fire``
that writes nothing of its own (the scheduler records the ``scheduler_fire`` row), printing
``leader`` on stdout when it starts leading (``lost`` if it stops). With ``--hold`` it only takes
:class:`~campaigns.leader.Leadership`, prints ``leader`` and sleeps: the leader tests' holder.

:class:`Runner` (test side) starts one with the interpreter running the tests, in the repository
root, stderr to a log file, and kills it with SIGKILL; tests call :meth:`Runner.kill` in
``finally`` so no process outlives its test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import campaigns.models  # noqa: F401  (registers the campaigns' tables)
from bot.db import create_engine
from bot.schema import upgrade
from campaigns.leader import Leadership
from campaigns.scheduler import CampaignScheduler

REPO = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Asia/Shanghai")


async def _fire(campaign_id: int, run_key: str) -> str:
    return f"fired {campaign_id} for {run_key}"


async def _hold(url: str) -> None:
    engine = create_engine(url)
    leadership = Leadership(engine)
    await leadership.wait(poll_seconds=0.2)
    print("leader", flush=True)
    await asyncio.Event().wait()


async def _schedule(url: str, owner: str, args: argparse.Namespace) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    scheduler = CampaignScheduler(
        engine, url, _fire, tz=TZ, owner=owner,
        leader_poll_seconds=args.poll, sync_seconds=args.sync,
    )  # fmt: skip
    task = asyncio.create_task(scheduler.run())
    leading = False
    while not task.done():
        if scheduler.leading != leading:
            leading = scheduler.leading
            print("leader" if leading else "lost", flush=True)
        await asyncio.sleep(0.05)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="scheduler_proc")
    parser.add_argument("url")
    parser.add_argument("owner")
    parser.add_argument("--hold", action="store_true", help="only hold the leadership")
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--sync", type=float, default=0.3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run = _hold(args.url) if args.hold else _schedule(args.url, args.owner, args)
    asyncio.run(run)


class Runner:
    """A ``scheduler_proc`` subprocess seen from a test."""

    def __init__(self, proc: asyncio.subprocess.Process, owner: str) -> None:
        self.proc = proc
        self.owner = owner

    @classmethod
    async def start(cls, url: str, owner: str, log_dir: Path, *options: str) -> Runner:
        with (log_dir / f"{owner}.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.campaigns.scheduler_proc", url, owner, *options,
                cwd=REPO, env=dict(os.environ), stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        return cls(proc, owner)

    async def says(self, word: str, within: float) -> bool:
        """Whether the process prints the line ``word`` within ``within`` seconds."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                while line := await self.proc.stdout.readline():
                    if line.decode().strip() == word:
                        return True
        except TimeoutError:
            return False
        return False  # the process ended

    async def kill(self) -> None:
        """SIGKILL (no clean-up in the child: the point of the tests) and reap."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


async def first_to_say(runners: list[Runner], word: str, within: float) -> Runner:
    """The first of ``runners`` to print ``word`` (AssertionError if none does in time)."""
    tasks = {asyncio.create_task(r.says(word, within)): r for r in runners}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.result():
                    return tasks[task]
        raise AssertionError(f"no process printed {word!r} within {within} s")
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


if __name__ == "__main__":
    main()
