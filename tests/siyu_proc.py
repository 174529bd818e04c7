"""``siyu`` commands as real subprocesses, for the tests of restarts, signals, outages and logs.

:class:`SiyuProc` starts ``siyu <args>`` (the console script of the running interpreter's venv)
in a directory of its own (so no developer ``.env`` is read), with the environment given on top
of this one, stdout on a pipe (tests wait for the lines the command prints) and stderr in a file
(the log, read at the end). :meth:`SiyuProc.stop` sends a signal and waits for the exit code;
tests call :meth:`SiyuProc.kill` in ``finally`` so no process outlives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

SIYU = str(Path(sys.executable).with_name("siyu"))
STARTUP_S = 120.0
"""How long a command may take to start (models, Chroma) on a loaded 2-core machine."""


def _log_file(cwd: Path, name: str) -> Path:
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd / f"{name}.log"


class SiyuProc:
    """One ``siyu`` subprocess seen from a test."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.proc = proc
        self.name = name
        self.log = log
        self.output = ""
        """What it printed on stdout so far (as read by :meth:`wait_for`)."""

    @classmethod
    async def start(cls, name: str, *args: str, env: dict[str, str], cwd: Path) -> SiyuProc:
        """``siyu <args>`` in ``cwd``; stderr goes to ``cwd/<name>.log``."""
        log = _log_file(cwd, name)
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                SIYU, *args, cwd=cwd, env={**os.environ, **env},
                stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        return cls(proc, name, log)

    async def wait_for(self, text: str, within: float = STARTUP_S) -> str:
        """Read stdout until a line holding ``text``; that line (AssertionError if the process
        ends or ``within`` seconds pass first)."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                while line := await self.proc.stdout.readline():
                    decoded = line.decode(errors="replace")
                    self.output += decoded
                    if text in decoded:
                        return decoded
        except TimeoutError:
            raise AssertionError(f"{self.name} did not print {text!r} in {within} s") from None
        raise AssertionError(f"{self.name} ended before printing {text!r}: {self.stderr()}")

    async def url(self) -> str:
        """The base URL a ``siyu serve`` printed (``http://127.0.0.1:<port>/``)."""
        line = await self.wait_for("http://127.0.0.1:")
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, line
        await self.wait_for("Ctrl-C stops.")
        return match.group(0)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 60.0) -> int:
        """Send ``sig``, wait for the exit; its code (AssertionError if it does not exit)."""
        if self.alive:
            self.proc.send_signal(sig)
        return await self.exited(within)

    async def exited(self, within: float = 60.0) -> int:
        """Wait for the exit (after a signal already sent); its code."""
        try:
            async with asyncio.timeout(within):
                await self._drain_stdout()
                return await self.proc.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit within {within} s") from None

    async def kill(self) -> None:
        """SIGKILL if still running, and reap."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        await self._drain_stdout()
        await self.proc.wait()

    async def _drain_stdout(self) -> None:
        if self.proc.stdout is not None:
            self.output += (await self.proc.stdout.read()).decode(errors="replace")
