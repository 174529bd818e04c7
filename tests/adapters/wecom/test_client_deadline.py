"""The platform API client's per-call deadline and circuit breaker, against the fake platform
over real HTTP; and what the delivery worker's sender makes of an open breaker.

Time bounds are generous upper bounds proving "does not hang"; the breaker runs on the fake
platform's clock, moved by hand.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from adapters.wecom.client import CALL_DEADLINE_S, Credentials, WeComClient
from adapters.wecom.errors import PlatformUnavailable, TransportError, WindowClosedError
from adapters.wecom.outbound import PlatformSender
from bot.deadline import COOL_DOWN, State
from bot.errors import DeliveryError
from bot.types import Address, Outbound
from tests.fakes.wecom_server import FakePlatform

KF = "wkfake"
STATE_GET = "/cgi-bin/kf/service_state/get"
SEND = "/cgi-bin/kf/send_msg"


def client_for(
    session: aiohttp.ClientSession, fake: FakePlatform, *, deadline: float = CALL_DEADLINE_S
) -> WeComClient:
    """A kf client on the fake platform, its breaker on the fake's clock, short back-offs."""
    creds = Credentials("wecom", fake.corp_id, fake.corp_secret)
    return WeComClient(
        session, creds, base_url=fake.url, clock=fake.clock, backoff=0.05, deadline=deadline
    )


async def state(client: WeComClient) -> int:
    return await client.kf_service_state_get(open_kfid=KF, external_userid="u1")


async def test_a_hanging_api_ends_by_the_call_deadline_retries_included(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    """Each request may take 10 s and three are allowed; the call still ends by its 1 s."""
    await state(client := client_for(session, wecom_server, deadline=1.0))  # token cached
    wecom_server.delay(STATE_GET, 30, times=3)
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        await state(client)
    assert time.monotonic() - started < 3.0
    assert caught.value.maybe_delivered  # it may have arrived: a send is not repeated blindly


async def test_three_failed_calls_open_the_breaker_and_a_probe_closes_it(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, wecom_server)
    wecom_server.http_status(STATE_GET, 502, times=9)  # 3 calls x 3 attempts
    for _ in range(3):
        with pytest.raises(TransportError):
            await state(client)
    assert client.breaker.state is State.OPEN
    asked = wecom_server.count(STATE_GET)
    with pytest.raises(PlatformUnavailable) as caught:
        await state(client)
    assert not caught.value.maybe_delivered
    assert wecom_server.count(STATE_GET) == asked  # nothing sent while open

    wecom_server.clock.advance(COOL_DOWN)
    assert await state(client) == 0  # the probe: the platform answers again
    assert client.breaker.state is State.CLOSED


async def test_an_errcode_is_the_platform_answering_not_an_outage(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, wecom_server)
    for _ in range(4):  # no customer message: 95001, the window is closed
        with pytest.raises(WindowClosedError):
            await client.kf_send_text(touser="u1", open_kfid=KF, content="在吗")
    assert client.breaker.state is State.CLOSED


async def test_the_delivery_worker_retries_a_send_refused_by_an_open_breaker(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, wecom_server)
    wecom_server.http_status(STATE_GET, 500, times=9)
    for _ in range(3):
        with pytest.raises(TransportError):
            await state(client)
    sender = PlatformSender(kf={"main": client}, oa={}, contact=None, robots={}, bridges={})
    address = Address(route="kf", account="main", user="u1", chat=KF).as_fields()
    message = Outbound("kf", address, "今日特价", key="o-1")
    with pytest.raises(DeliveryError) as caught:
        await sender.send(message)
    assert (caught.value.reason, caught.value.retryable) == ("transport", True)
    assert wecom_server.count(SEND) == 0
