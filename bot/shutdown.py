"""How the long-running commands stop: SIGTERM (what service managers send on every deploy) and
SIGINT (Ctrl-C) set one event; each command decides what stopping means for its work.

- ``siyu serve`` / ``demo``: the web server drains (:mod:`adapters.web.drain`), then the inbox's
  leases still held are given back (:meth:`bot.inbox.Inbox.release`); exit 0.
- ``siyu worker``: finishes the send in hand, gives back the outbox rows it claimed but did not
  start (:meth:`campaigns.worker.DeliveryWorker.run`); exit 0.
- ``siyu scheduler``: stops scheduling and releases its leadership
  (:meth:`campaigns.scheduler.CampaignScheduler.run` is cancelled); exit 0.

A second signal while stopping is not caught any more: SIGINT then raises ``KeyboardInterrupt``
and SIGTERM ends the process, for an operator who will not wait for the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT this process receives (call it inside the
    running loop, from the main thread)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stopping(signum: signal.Signals) -> None:
        log.info("%s received: stopping", signum.name)
        stop.set()
        for sig in STOP_SIGNALS:  # the next one acts as if we had never caught any
            loop.remove_signal_handler(sig)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping, sig)
    return stop


async def until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` until it ends or ``stop`` is set, then cancel it and wait for its clean-up.
    True when it was stopped; its own exception, if it failed first, propagates."""
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopped.cancel()
    if task.done():
        task.result()
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True
