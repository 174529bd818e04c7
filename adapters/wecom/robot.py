"""The WeCom group robot (群机器人): send-only webhooks into a group, at most 20 messages a minute
per robot, enforced here with a sliding window (never left to the platform to drop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp

from adapters.wecom.client import JSON, WECOM_BASE_URL, Clock, RetryPolicy, Sleep, request_json
from adapters.wecom.errors import BadRequestError
from adapters.wecom.limits import MARKDOWN_MAX_BYTES, TEXT_MAX_BYTES, split_text
from adapters.wecom.quota import SlidingWindows


class RobotWebhook:
    """A WeCom group robot: send-only, no token, at most ``per_minute`` messages a minute."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        key: str,
        *,
        base_url: str = WECOM_BASE_URL,
        per_minute: int = 20,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not key:
            raise ValueError("the robot key is empty")
        self._session = session
        self._key = key
        self._url = base_url.rstrip("/") + "/cgi-bin/webhook/send"
        self._timeout = timeout
        self._window = SlidingWindows([(per_minute, 60.0)], clock=clock)
        self._sleep = sleep
        self._turn = asyncio.Lock()  # one waiter at a time keeps the order of sends
        self._retry = RetryPolicy(max_attempts, backoff)

    async def send_text(self, content: str, mentioned: Sequence[str] = ()) -> None:
        """Post text, split into parts of at most 2048 bytes; ``mentioned`` are @-ed once."""
        for index, part in enumerate(self._parts(content, TEXT_MAX_BYTES)):
            text: JSON = {"content": part}
            if mentioned and index == 0:
                text["mentioned_list"] = list(mentioned)
            await self._post({"msgtype": "text", "text": text})

    async def send_markdown(self, content: str) -> None:
        """Post markdown, split into parts of at most 4096 bytes."""
        for part in self._parts(content, MARKDOWN_MAX_BYTES):
            await self._post({"msgtype": "markdown", "markdown": {"content": part}})

    @staticmethod
    def _parts(content: str, max_bytes: int) -> list[str]:
        parts = split_text(content, max_bytes)
        if not parts:
            raise BadRequestError("the message text is empty")
        return parts

    async def _post(self, payload: JSON) -> None:
        async def attempt() -> JSON:
            await self._slot()  # a retry is a send too: it takes a slot
            return await request_json(
                self._session,
                "POST",
                self._url,
                api="/cgi-bin/webhook/send",
                params={"key": self._key},
                payload=payload,
                seconds=self._timeout,
            )

        await self._retry.run(attempt, self._sleep, idempotent=False)  # no caller id

    async def _slot(self) -> None:
        """Wait until one more post fits the robot's minute, then count it."""
        async with self._turn:
            while (wait := self._window.wait()) > 0:
                await self._sleep(wait)
