"""The API client and the group robot against the fake platform, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest

from adapters.wecom.client import Credentials, TokenCache, WeComClient
from adapters.wecom.errors import (
    APIError,
    BadRequestError,
    RateLimitedError,
    SystemBusyError,
    TokenExpiredError,
    TransportError,
    WindowClosedError,
)
from adapters.wecom.robot import RobotWebhook
from bot.text import utf8_len
from tests.fakes.wecom_server import FakePlatform

KF = "wkfake"
STATE_GET = "/cgi-bin/kf/service_state/get"
SEND = "/cgi-bin/kf/send_msg"


class RecordingSleep:
    """Records the back-off delays instead of sleeping; optionally moves a fake clock."""

    def __init__(self, advance: Callable[[float], None] | None = None) -> None:
        self.delays: list[float] = []
        self._advance = advance

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._advance is not None:
            self._advance(seconds)
        await asyncio.sleep(0)


def _client(
    session: aiohttp.ClientSession,
    fake: FakePlatform,
    *,
    kind: str = "wecom",
    sleep: RecordingSleep | None = None,
    timeout: float = 10.0,
    max_attempts: int = 3,
    backoff: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> WeComClient:
    creds = (
        Credentials("wecom", fake.corp_id, fake.corp_secret)
        if kind == "wecom"
        else Credentials("oa", fake.oa_app_id, fake.oa_secret)
    )
    return WeComClient(
        session,
        creds,
        base_url=fake.url,
        sleep=sleep or RecordingSleep(),
        timeout=timeout,
        max_attempts=max_attempts,
        backoff=backoff,
        clock=clock,
    )


async def _state(client: WeComClient, user: str = "u1") -> int:
    return await client.kf_service_state_get(open_kfid=KF, external_userid=user)


async def test_the_token_is_fetched_once_and_cached(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    assert [await _state(client) for _ in range(3)] == [0, 0, 0]
    assert wecom_server.count("/cgi-bin/gettoken") == 1
    tokens = {r.params["access_token"] for r in wecom_server.requests if r.api == STATE_GET}
    assert len(tokens) == 1


async def test_concurrent_callers_share_one_token_fetch(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    states = await asyncio.gather(*(_state(client, f"u{i}") for i in range(20)))
    assert states == [0] * 20
    assert wecom_server.count("/cgi-bin/gettoken") == 1
    assert wecom_server.count(STATE_GET) == 20


async def test_clients_sharing_a_cache_share_the_token(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    cache = TokenCache()
    creds = Credentials("wecom", wecom_server.corp_id, wecom_server.corp_secret)
    first = WeComClient(session, creds, base_url=wecom_server.url, tokens=cache)
    second = WeComClient(session, creds, base_url=wecom_server.url, tokens=cache)
    await _state(first)
    await _state(second)
    assert wecom_server.count("/cgi-bin/gettoken") == 1


async def test_the_official_account_uses_its_own_token_endpoint(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server, kind="oa")
    wecom_server.add_oa_message("openid1")
    await client.custom_send_text(touser="openid1", content="您的订单已发货")
    assert wecom_server.count("/cgi-bin/token") == 1
    assert wecom_server.count("/cgi-bin/gettoken") == 0
    assert wecom_server.custom_sent[0]["text"] == {"content": "您的订单已发货"}


async def test_the_token_is_refreshed_ahead_of_its_expiry(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    client = _client(session, wecom_server, clock=lambda: now[0])
    await _state(client)
    now[0] = 7200 - 300 - 1
    await _state(client)
    assert wecom_server.count("/cgi-bin/gettoken") == 1
    now[0] = 7200 - 300
    await _state(client)
    assert wecom_server.count("/cgi-bin/gettoken") == 2


async def test_an_expired_token_is_refetched_once(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    await _state(client)
    wecom_server.clock.advance(7200)  # the platform expires it before our clock says so
    assert await _state(client) == 0
    assert wecom_server.count("/cgi-bin/gettoken") == 2
    assert wecom_server.count(STATE_GET) == 3


@pytest.mark.parametrize("errcode", [40014, 42001])
async def test_token_errors_refetch_then_succeed(
    wecom_server: FakePlatform, session: aiohttp.ClientSession, errcode: int
) -> None:
    client = _client(session, wecom_server)
    wecom_server.fail_next(STATE_GET, errcode)
    assert await _state(client) == 0
    assert wecom_server.count("/cgi-bin/gettoken") == 2
    first, second = [r.params["access_token"] for r in wecom_server.requests if r.api == STATE_GET]
    assert first != second


async def test_a_token_error_twice_is_raised(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    wecom_server.fail_next(STATE_GET, 42001, times=2)
    with pytest.raises(TokenExpiredError) as caught:
        await _state(client)
    assert caught.value.errcode == 42001
    assert wecom_server.count(STATE_GET) == 2


async def test_invalidate_keeps_a_token_that_was_already_replaced() -> None:
    cache = TokenCache()
    creds = Credentials("wecom", "corp", "secret")
    fetched = iter([("old", 7200.0), ("new", 7200.0)])

    async def fetch() -> tuple[str, float]:
        return next(fetched)

    assert await cache.get(creds, fetch) == "old"
    cache.invalidate(creds, "old")
    assert await cache.get(creds, fetch) == "new"
    cache.invalidate(creds, "old")  # a late caller with the stale token
    assert await cache.get(creds, fetch) == "new"


async def test_wrong_credentials_are_not_taken_for_an_expired_token(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    creds = Credentials("wecom", wecom_server.corp_id, "wrong")
    client = WeComClient(session, creds, base_url=wecom_server.url)
    with pytest.raises(APIError) as caught:
        await _state(client)
    assert not isinstance(caught.value, TokenExpiredError)
    assert caught.value.errcode == 40001
    assert wecom_server.count("/cgi-bin/gettoken") == 1
    assert "wrong" not in repr(creds)


async def test_system_busy_is_retried_with_backoff(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = _client(session, wecom_server, sleep=sleep)
    wecom_server.fail_next(STATE_GET, -1, times=2)
    assert await _state(client) == 0
    assert sleep.delays == [0.5, 1.0]
    assert wecom_server.count(STATE_GET) == 3


async def test_system_busy_gets_at_most_three_attempts(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server, max_attempts=6)
    wecom_server.fail_next(STATE_GET, -1, times=5)
    with pytest.raises(SystemBusyError):
        await _state(client)
    assert wecom_server.count(STATE_GET) == 3


async def test_rate_limits_back_off_then_succeed(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = _client(session, wecom_server, sleep=sleep, backoff=2.0)
    wecom_server.fail_next(STATE_GET, 45009)
    assert await _state(client) == 0
    assert sleep.delays == [2.0]


async def test_rate_limits_give_up_after_max_attempts(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = _client(session, wecom_server, sleep=sleep, max_attempts=4)
    wecom_server.fail_next(STATE_GET, 45033, times=4)
    with pytest.raises(RateLimitedError):
        await _state(client)
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert wecom_server.count(STATE_GET) == 4


async def test_timeouts_become_a_transport_error_after_bounded_retries(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server, timeout=0.2)
    await _state(client)  # the token first, so only the slow API is counted
    wecom_server.delay(STATE_GET, 30.0, times=3)
    with pytest.raises(TransportError) as caught:
        await _state(client)
    assert caught.value.errcode == -2
    assert wecom_server.count(STATE_GET) == 4


async def test_http_errors_and_non_json_are_retried(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    wecom_server.http_status(STATE_GET, 502)
    wecom_server.not_json(STATE_GET)
    assert await _state(client) == 0
    wecom_server.not_json(STATE_GET, times=3)
    with pytest.raises(TransportError, match="not JSON"):
        await _state(client)


async def test_a_refused_connection_is_a_transport_error(session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    creds = Credentials("wecom", "corp", "s3cret-value")
    client = WeComClient(session, creds, base_url="http://127.0.0.1:9", sleep=sleep)
    with pytest.raises(TransportError) as caught:
        await client.kf_service_state_get(open_kfid=KF, external_userid="u1")
    assert "s3cret-value" not in str(caught.value)
    assert len(sleep.delays) == 2


async def test_window_errors_are_raised_at_once(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = _client(session, wecom_server, sleep=sleep)

    async def send(user: str) -> None:
        await client.kf_send_text(touser=user, open_kfid=KF, content="好的")

    with pytest.raises(WindowClosedError) as caught:
        await send("nobody-wrote")
    assert caught.value.errcode == 95001
    wecom_server.add_kf_message("u1", "在吗", open_kfid=KF)
    for _ in range(5):
        await send("u1")
    with pytest.raises(WindowClosedError) as caught:
        await send("u1")
    assert caught.value.errcode == 95002
    wecom_server.add_kf_message("u2", "转人工", open_kfid=KF)
    await client.kf_service_state_trans(open_kfid=KF, external_userid="u2", service_state=3)
    with pytest.raises(WindowClosedError) as caught:
        await send("u2")
    assert caught.value.errcode == 95018
    assert wecom_server.count(SEND) == 8
    assert len(wecom_server.kf_sent) == 5
    assert sleep.delays == []


@pytest.mark.parametrize("errcode", [95001, 95002, 95018, 45015, 45047])
async def test_every_window_errcode_is_final(
    wecom_server: FakePlatform, session: aiohttp.ClientSession, errcode: int
) -> None:
    client = _client(session, wecom_server)
    wecom_server.fail_next(STATE_GET, errcode)
    with pytest.raises(WindowClosedError):
        await _state(client)
    assert wecom_server.count(STATE_GET) == 1


async def test_official_account_window_errors(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server, kind="oa")
    with pytest.raises(WindowClosedError) as caught:
        await client.custom_send_text(touser="openid1", content="您好")
    assert caught.value.errcode == 45015
    wecom_server.add_oa_message("openid1")
    for _ in range(5):
        await client.custom_send_text(touser="openid1", content="您好")
    with pytest.raises(WindowClosedError) as caught:
        await client.custom_send_text(touser="openid1", content="您好")
    assert caught.value.errcode == 45047


async def test_a_retried_kf_send_with_our_msgid_is_delivered_once(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    wecom_server.add_kf_message("u1", "在吗", open_kfid=KF)
    first = await client.kf_send_text(touser="u1", open_kfid=KF, content="在的", msgid="in-42")
    again = await client.kf_send_text(touser="u1", open_kfid=KF, content="在的", msgid="in-42")
    assert first["msgid"] == again["msgid"] == "in-42"
    assert len(wecom_server.kf_sent) == 1
    assert wecom_server.kf_sent[0]["text"] == {"content": "在的"}


async def test_kf_helpers_speak_the_documented_payloads(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    msg = wecom_server.add_kf_message("u1", "积分怎么用", open_kfid=KF)
    page = await client.kf_sync_msg(
        token=wecom_server.kf_callback_token, open_kfid=KF, cursor=None, limit=10
    )
    assert page["msg_list"] == [msg]
    assert page["has_more"] == 0
    code = wecom_server.issue_event_code()
    await client.kf_send_msg_on_event(code=code, content="欢迎光临")
    assert wecom_server.event_sent == [
        {"code": code, "msgtype": "text", "text": {"content": "欢迎光临"}}
    ]
    await client.kf_service_state_trans(
        open_kfid=KF, external_userid="u1", service_state=2, servicer_userid="staff1"
    )
    assert await _state(client) == 2
    await client.message_send_text(agentid=1000002, touser="staff1", content="新的顾客问题")
    assert wecom_server.app_sent[0]["agentid"] == 1000002


async def test_bad_requests_are_refused_before_sending(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    client = _client(session, wecom_server)
    with pytest.raises(BadRequestError, match="bytes"):
        await client.kf_send_text(touser="u1", open_kfid=KF, content="长" * 683)
    with pytest.raises(BadRequestError, match="msgid"):
        await client.kf_send_text(touser="u1", open_kfid=KF, content="好", msgid="带中文")
    with pytest.raises(BadRequestError, match="empty"):
        await client.custom_send_text(touser="o1", content="  ")
    with pytest.raises(BadRequestError, match="limit"):
        await client.kf_sync_msg(token="t", open_kfid=KF, cursor=None, limit=1001)
    with pytest.raises(ValueError, match="service_state"):
        await client.kf_service_state_trans(open_kfid=KF, external_userid="u1", service_state=7)
    assert wecom_server.requests == []


def _max_in_any_minute(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 60) for start in times)


async def test_the_robot_never_posts_more_than_twenty_in_any_minute(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep(advance=wecom_server.clock.advance)
    robot = RobotWebhook(
        session, "robot-key", base_url=wecom_server.url, clock=wecom_server.clock, sleep=sleep
    )
    for i in range(25):
        wecom_server.clock.advance(0.5)  # a burst, faster than the limit allows
        await robot.send_text(f"今日特价第{i}条")
    times = [t for t, _ in wecom_server.robot_sent]
    assert len(times) == 25
    assert _max_in_any_minute(times) == 20
    assert sleep.delays  # it had to wait
    assert wecom_server.count("/cgi-bin/webhook/send") == 25  # never refused, never retried


async def test_robot_posts_are_split_to_the_byte_limits(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    robot = RobotWebhook(session, "k", base_url=wecom_server.url, sleep=RecordingSleep())
    await robot.send_text("今天全场九折，会员再享积分双倍。" * 100, mentioned=["@all"])
    await robot.send_markdown("## 本周特价\n\n" + "**洗衣液** 买一送一。\n" * 400)
    texts = [b["text"] for _, b in wecom_server.robot_sent if b["msgtype"] == "text"]
    marks = [b["markdown"] for _, b in wecom_server.robot_sent if b["msgtype"] == "markdown"]
    assert len(texts) == 3
    assert all(utf8_len(t["content"]) <= 2048 for t in texts)
    assert [t.get("mentioned_list") for t in texts] == [["@all"], None, None]
    assert len(marks) == 3
    assert all(utf8_len(m["content"]) <= 4096 for m in marks)
    assert marks[0]["content"].startswith("## 本周特价")


async def test_robot_refuses_blank_text(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    robot = RobotWebhook(session, "k", base_url=wecom_server.url)
    with pytest.raises(BadRequestError):
        await robot.send_text(" \n ")
    assert wecom_server.robot_sent == []


async def test_sends_without_a_caller_id_are_not_repeated_after_a_late_answer(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    custom = "/cgi-bin/message/custom/send"
    oa = _client(session, wecom_server, kind="oa")
    wecom_server.add_oa_message("o1")
    await oa.custom_send_text(touser="o1", content="先拿 token")
    # A 502 may come from a proxy after the platform acted: a repeat could deliver twice.
    wecom_server.http_status(custom, 502)
    with pytest.raises(TransportError) as caught:
        await oa.custom_send_text(touser="o1", content="双十二特惠")
    assert caught.value.maybe_delivered
    assert wecom_server.count(custom) == 2  # the first send, then one attempt only
    # kf sends carry our msgid, so the same failure is simply retried.
    kf = _client(session, wecom_server)
    wecom_server.add_kf_message("u1", "在吗", open_kfid=KF)
    wecom_server.http_status(SEND, 502)
    await kf.kf_send_text(touser="u1", open_kfid=KF, content="好的", msgid="m-1")
    assert wecom_server.count(SEND) == 2
    assert len(wecom_server.kf_sent) == 1


async def test_a_send_that_never_left_is_retried(session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    creds = Credentials("oa", "wxapp", "secret")
    client = WeComClient(session, creds, base_url="http://127.0.0.1:9", sleep=sleep)
    with pytest.raises(TransportError) as caught:
        await client.custom_send_text(touser="o1", content="hi")
    assert not caught.value.maybe_delivered  # connection refused: safe to try again
    assert len(sleep.delays) == 2
