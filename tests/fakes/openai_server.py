"""A fake OpenAI-compatible API on 127.0.0.1 for tests: chat completions and embeddings.

Use the ``openai_server`` fixture: import it into a conftest
(``from tests.fakes.openai_server import openai_server``; ``pytest_plugins`` only works in the
root conftest). Point clients at ``server.base_url`` (ends in ``/v1``).

Script chat responses per test; each request pops the next scripted behaviour, and when the script
is empty ``server.responder(body)`` writes the reply text (default: "好的。[1]")::

    server.reply("答案 [1]")            # 200 with this content
    server.fail(500)                    # HTTP 500 with an OpenAI error body
    server.fail(429, retry_after=1.0)   # ... with a Retry-After header
    server.delay(2.0, "slow")           # answer after 2 s (longer than a 0.5 s client timeout)
    server.malformed()                  # 200 with a body that is not JSON
    server.reply("")                    # 200 with empty content
    server.tool_call("product_info", {"name_or_sku": "车厘子"})   # 200: the model calls a tool
    server.tool_calls(("list_deals", {}), ("list_stores", {}))   # several calls in one reply
    server.fail_embeddings(400)         # the next /v1/embeddings request fails

Outages are switched at run time and last until switched back; they take precedence over the
script (what an LLM provider's incident looks like)::

    server.outage("down")               # every chat request: HTTP 500
    server.outage("hang")               # accepted, never answered (until the server closes)
    server.outage("drip")               # 200 and headers at once, then the body 1 byte a second
    server.outage("rate_limited")       # 429 with Retry-After: 60 (``retry_after=`` to change)
    server.outage("garbage")            # 200 with a body that is not JSON
    server.outage("up")                 # back to normal (also ``server.up()``)
    server.outage("hang", endpoint="embeddings")   # the same for /v1/embeddings

Every request body is recorded: ``server.chat_requests`` / ``server.embedding_requests``;
``ChatRequest.text`` joins the messages' contents so a test can assert what a prompt contained;
``ChatRequest.tool_names`` lists the tools offered and ``ChatRequest.tool_results`` the
``role: "tool"`` messages sent back.
Embeddings are deterministic character-hash vectors (``dim`` floats), as floats or base64.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pytest
from aiohttp import web


@dataclass(frozen=True)
class ChatRequest:
    """One recorded POST /v1/chat/completions body."""

    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def text(self) -> str:
        """Every message's content, joined: what the model was shown."""
        return "\n".join(_content_text(m.get("content")) for m in self.messages)

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools the request offered (``body["tools"]``)."""
        return [t["function"]["name"] for t in self.body.get("tools", [])]

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``role: "tool"`` messages: results of the tool calls the model made."""
        return [m for m in self.messages if m.get("role") == "tool"]

    @property
    def last_user_text(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return _content_text(users[-1].get("content")) if users else ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


@dataclass(frozen=True)
class _Reply:
    content: str


@dataclass(frozen=True)
class _Fail:
    status: int
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class _Delay:
    seconds: float
    content: str


@dataclass(frozen=True)
class _Malformed:
    pass


@dataclass(frozen=True)
class _ToolCalls:
    calls: tuple[tuple[str, dict[str, Any]], ...]


Behaviour = _Reply | _Fail | _Delay | _Malformed | _ToolCalls

Outage = Literal["up", "down", "hang", "drip", "rate_limited", "garbage"]
Endpoint = Literal["chat", "embeddings"]
OUTAGES: tuple[Outage, ...] = ("down", "hang", "drip", "rate_limited", "garbage")


@dataclass
class FakeOpenAI:
    """The fake server's script and recordings; ``base_url`` is set once it listens."""

    base_url: str = ""
    dim: int = 32
    responder: Callable[[ChatRequest], str] = lambda _request: "好的。[1]"
    chat_requests: list[ChatRequest] = field(default_factory=list)
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)
    _script: deque[Behaviour] = field(default_factory=deque)
    _embedding_script: deque[_Fail] = field(default_factory=deque)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _tool_call_count: int = 0
    _outages: dict[Endpoint, Outage] = field(default_factory=dict)
    _retry_after: float = 60.0

    def outage(
        self, mode: Outage, *, endpoint: Endpoint = "chat", retry_after: float = 60.0
    ) -> None:
        """Fail every request to ``endpoint`` in ``mode`` from now on ("up" ends it)."""
        self._retry_after = retry_after
        if mode == "up":
            self._outages.pop(endpoint, None)
        else:
            self._outages[endpoint] = mode

    def up(self, endpoint: Endpoint = "chat") -> None:
        """End the outage of ``endpoint``."""
        self.outage("up", endpoint=endpoint)

    def reply(self, *contents: str) -> None:
        """Answer the next requests with these contents, one each."""
        self._script.extend(_Reply(c) for c in contents)

    def fail(
        self,
        status: int = 500,
        message: str = "internal error",
        *,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests with an HTTP error (with a Retry-After header
        when ``retry_after`` is given)."""
        self._script.extend(_Fail(status, message, retry_after) for _ in range(times))

    def delay(self, seconds: float, content: str = "迟到的回答", *, times: int = 1) -> None:
        """Answer the next ``times`` requests only after ``seconds``."""
        self._script.extend(_Delay(seconds, content) for _ in range(times))

    def malformed(self, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with a 200 whose body is not JSON."""
        self._script.extend(_Malformed() for _ in range(times))

    def tool_call(
        self, name: str, arguments: dict[str, Any] | None = None, *, times: int = 1
    ) -> None:
        """Answer the next ``times`` requests with one call of the tool ``name``."""
        self._script.extend(_ToolCalls(((name, arguments or {}),)) for _ in range(times))

    def tool_calls(self, *calls: tuple[str, dict[str, Any]]) -> None:
        """Answer the next request with several tool calls: ``(name, arguments)`` each."""
        self._script.append(_ToolCalls(calls))

    def fail_embeddings(
        self, status: int = 500, message: str = "internal error", *, times: int = 1
    ) -> None:
        """Answer the next ``times`` embedding requests with an HTTP error."""
        self._embedding_script.extend(_Fail(status, message) for _ in range(times))

    @property
    def pending(self) -> int:
        """Scripted behaviours not used yet."""
        return len(self._script)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = ChatRequest(body)
        self.chat_requests.append(chat)
        if "chat" in self._outages:
            return await self._failing(request, self._outages["chat"])
        behaviour = self._script.popleft() if self._script else _Reply(self.responder(chat))
        if isinstance(behaviour, _Fail):
            error = {"error": {"message": behaviour.message, "type": "server_error"}}
            wait = behaviour.retry_after
            headers = {"Retry-After": f"{wait:g}"} if wait is not None else None
            return web.json_response(error, status=behaviour.status, headers=headers)
        if isinstance(behaviour, _Malformed):
            return web.Response(text='{"choices": [', content_type="application/json")
        if isinstance(behaviour, _Delay):
            # Wakes early when the server closes, so teardown never waits for the delay.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), behaviour.seconds)
            behaviour = _Reply(behaviour.content)
        model = str(body.get("model", "fake"))
        if isinstance(behaviour, _ToolCalls):
            first = self._tool_call_count
            self._tool_call_count += len(behaviour.calls)
            return web.json_response(_tool_completion(model, behaviour.calls, first))
        return web.json_response(_completion(model, behaviour.content))

    async def _failing(self, request: web.Request, mode: Outage) -> web.StreamResponse:
        """One request answered as the outage ``mode`` says (see the module docstring)."""
        if mode == "hang":
            await self._closing.wait()
        if mode in ("down", "hang"):
            error = {"error": {"message": "the service is down", "type": "server_error"}}
            return web.json_response(error, status=500)
        if mode == "rate_limited":
            error = {"error": {"message": "rate limit reached", "type": "rate_limit_error"}}
            headers = {"Retry-After": f"{self._retry_after:g}"}
            return web.json_response(error, status=429, headers=headers)
        if mode == "garbage":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        return await self._drip(request)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        """200 and the headers at once, then a valid completion one byte a second."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        payload = json.dumps(_completion("fake", "一点一点地回答")).encode()
        with contextlib.suppress(ConnectionResetError):
            for index in range(len(payload)):
                await response.write(payload[index : index + 1])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), 1.0)
                if self._closing.is_set():
                    break
        return response

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.embedding_requests.append(body)
        if "embeddings" in self._outages:
            return await self._failing(request, self._outages["embeddings"])
        if self._embedding_script:
            failure = self._embedding_script.popleft()
            error = {"error": {"message": failure.message, "type": "server_error"}}
            return web.json_response(error, status=failure.status)
        inputs = body.get("input", [])
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            vector = hash_vector(json.dumps(item, ensure_ascii=False), self.dim)
            encoded: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if as_base64
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        usage = {"prompt_tokens": len(items), "total_tokens": len(items)}
        return web.json_response(
            {"object": "list", "data": data, "model": body.get("model", "fake"), "usage": usage}
        )


def hash_vector(text: str, dim: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A deterministic unit vector from the text's characters (similar texts, similar vectors)."""
    vector = np.zeros(dim, dtype=np.float32)
    for char in text:
        digest = hashlib.blake2b(char.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "big") % dim] += 1.0
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def _completion(model: str, content: str) -> dict[str, Any]:
    return _chat_completion(model, {"role": "assistant", "content": content}, "stop")


def _tool_completion(
    model: str, calls: tuple[tuple[str, dict[str, Any]], ...], first: int
) -> dict[str, Any]:
    """An assistant message calling tools (content null), call ids unique within the test."""
    tool_calls = [
        {
            "id": f"call_{first + n}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
        }
        for n, (name, args) in enumerate(calls)
    ]
    message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    return _chat_completion(model, message, "tool_calls")


def _chat_completion(model: str, message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


@contextlib.asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A fake OpenAI-compatible server listening on 127.0.0.1 while the block runs (the fixture,
    and ``bench/llm_outage.py``)."""
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake._chat)
    app.router.add_post("/v1/embeddings", fake._embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        fake._closing.set()
        await runner.cleanup()


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    """A running fake OpenAI-compatible server; closed after the test."""
    async with running_fake_openai() as fake:
        yield fake
