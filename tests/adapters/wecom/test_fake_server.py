"""The fake WeCom / Official Account API itself, spoken to with plain HTTP: its rules must hold,
or the client and channel tests would prove nothing."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.fakes.wecom_server import WINDOW_S, FakePlatform

KF = "wkfake"


async def _token(session: aiohttp.ClientSession, fake: FakePlatform) -> str:
    query = {"corpid": fake.corp_id, "corpsecret": fake.corp_secret}
    async with session.get(f"{fake.url}/cgi-bin/gettoken", params=query) as response:
        data = await response.json()
    assert data["errcode"] == 0
    assert data["expires_in"] == 7200
    return str(data["access_token"])


async def _post(
    session: aiohttp.ClientSession, fake: FakePlatform, api: str, body: dict[str, Any], token: str
) -> dict[str, Any]:
    params = {"access_token": token}
    async with session.post(f"{fake.url}{api}", params=params, json=body) as response:
        data: dict[str, Any] = await response.json()
    return data


async def _send(
    session: aiohttp.ClientSession, fake: FakePlatform, token: str, user: str, **extra: Any
) -> int:
    body = {"touser": user, "open_kfid": KF, "msgtype": "text", "text": {"content": "好的"}}
    data = await _post(session, fake, "/cgi-bin/kf/send_msg", {**body, **extra}, token)
    return int(data["errcode"])


async def test_tokens_expire_by_the_fake_clock(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    body = {"open_kfid": KF, "external_userid": "u1"}
    api = "/cgi-bin/kf/service_state/get"
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 0
    wecom_server.clock.advance(7200)
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 42001
    assert (await _post(session, wecom_server, api, body, "forged"))["errcode"] == 40014


async def test_gettoken_checks_the_credentials(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    query = {"corpid": wecom_server.corp_id, "corpsecret": "wrong"}
    async with session.get(f"{wecom_server.url}/cgi-bin/gettoken", params=query) as response:
        assert (await response.json())["errcode"] == 40001
    query = {"grant_type": "client_credential", "appid": wecom_server.oa_app_id}
    query["secret"] = wecom_server.oa_secret
    async with session.get(f"{wecom_server.url}/cgi-bin/token", params=query) as response:
        data = await response.json()
    assert "errcode" not in data
    assert data["expires_in"] == 7200


async def test_sync_msg_pages_with_a_cursor_and_has_more(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    sent = [wecom_server.add_kf_message("u1", f"问题{i}", open_kfid=KF) for i in range(5)]
    wecom_server.add_kf_message("u9", "另一个客服号", open_kfid="wkother")
    seen: list[dict[str, Any]] = []
    cursor = ""
    pages = 0
    while True:
        body = {"token": wecom_server.kf_callback_token, "open_kfid": KF, "limit": 2}
        body["cursor"] = cursor
        data = await _post(session, wecom_server, "/cgi-bin/kf/sync_msg", body, token)
        assert data["errcode"] == 0
        seen.extend(data["msg_list"])
        cursor = data["next_cursor"]
        pages += 1
        if not data["has_more"]:
            break
    assert pages == 3
    assert seen == sent
    assert seen[0]["origin"] == 3
    assert seen[0]["text"] == {"content": "问题0"}
    # Resuming from the last cursor gives only what arrived since.
    later = wecom_server.add_kf_message("u1", "后来的问题", open_kfid=KF)
    body = {"token": wecom_server.kf_callback_token, "open_kfid": KF, "cursor": cursor}
    data = await _post(session, wecom_server, "/cgi-bin/kf/sync_msg", body, token)
    assert data["msg_list"] == [later]
    assert data["has_more"] == 0


async def test_sync_msg_refuses_a_wrong_callback_token_or_cursor(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    api = "/cgi-bin/kf/sync_msg"
    body = {"token": "stolen", "open_kfid": KF}
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 95007
    body = {"token": wecom_server.kf_callback_token, "open_kfid": KF, "cursor": "garbage"}
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 95012


async def test_sync_msg_without_a_token_is_allowed_counted_and_rate_limited(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    api = "/cgi-bin/kf/sync_msg"
    msg = wecom_server.add_kf_message("u1", "在吗", open_kfid=KF)
    wecom_server.kf_tokenless_per_minute = 2
    body = {"open_kfid": KF}
    codes = [(await _post(session, wecom_server, api, body, token))["errcode"] for _ in range(3)]
    assert codes == [0, 0, 45009]
    other = {"open_kfid": "wkother"}  # counted per open_kfid
    assert (await _post(session, wecom_server, api, other, token))["errcode"] == 0
    wecom_server.clock.advance(61)
    token = await _token(session, wecom_server)
    data = await _post(session, wecom_server, api, body, token)
    assert data["msg_list"] == [msg]
    assert wecom_server.kf_tokenless_syncs == {KF: 3, "wkother": 1}
    signed = {"token": wecom_server.kf_callback_token, "open_kfid": KF}  # not rate-limited
    assert (await _post(session, wecom_server, api, signed, token))["errcode"] == 0


async def test_send_msg_needs_a_customer_message_within_48_hours(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    assert await _send(session, wecom_server, token, "u1") == 95001
    wecom_server.add_kf_message("u1", "在吗", open_kfid=KF)
    assert await _send(session, wecom_server, token, "u1") == 0
    wecom_server.clock.advance(WINDOW_S + 1)
    token = await _token(session, wecom_server)
    assert await _send(session, wecom_server, token, "u1") == 95001
    assert len(wecom_server.kf_sent) == 1


async def test_send_msg_allows_five_replies_per_customer_message(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    wecom_server.add_kf_message("u1", "在吗", open_kfid=KF)
    codes = [await _send(session, wecom_server, token, "u1") for _ in range(6)]
    assert codes == [0, 0, 0, 0, 0, 95002]
    wecom_server.add_kf_message("u1", "还有一个问题", open_kfid=KF)
    assert await _send(session, wecom_server, token, "u1") == 0
    assert len(wecom_server.kf_sent) == 6


async def test_send_msg_is_refused_while_a_human_serves(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    wecom_server.add_kf_message("u1", "转人工", open_kfid=KF)
    trans = {"open_kfid": KF, "external_userid": "u1", "service_state": 2}
    data = await _post(session, wecom_server, "/cgi-bin/kf/service_state/trans", trans, token)
    assert data["errcode"] == 0
    assert await _send(session, wecom_server, token, "u1") == 95018
    assert wecom_server.kf_sent == []


async def test_send_msg_deduplicates_a_repeated_msgid(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    wecom_server.add_kf_message("u1", "在吗", open_kfid=KF)
    assert await _send(session, wecom_server, token, "u1", msgid="reply-1") == 0
    assert await _send(session, wecom_server, token, "u1", msgid="reply-1") == 0
    assert [s["msgid"] for s in wecom_server.kf_sent] == ["reply-1"]


async def test_send_msg_on_event_codes_work_once(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    code = wecom_server.issue_event_code()
    body = {"code": code, "msgtype": "text", "text": {"content": "欢迎"}}
    api = "/cgi-bin/kf/send_msg_on_event"
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 0
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 95016
    assert len(wecom_server.event_sent) == 1


async def test_robot_allows_twenty_posts_a_minute_per_key(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    url = f"{wecom_server.url}/cgi-bin/webhook/send"
    body = {"msgtype": "text", "text": {"content": "今日特价"}}

    async def post(key: str) -> int:
        async with session.post(url, params={"key": key}, json=body) as response:
            return int((await response.json())["errcode"])

    assert [await post("k1") for _ in range(21)] == [0] * 20 + [45009]
    assert await post("k2") == 0
    wecom_server.clock.advance(60)
    assert await post("k1") == 0
    too_long = {"msgtype": "text", "text": {"content": "长" * 700}}
    async with session.post(url, params={"key": "k3"}, json=too_long) as response:
        assert (await response.json())["errcode"] == 40058


async def test_custom_send_window_rules(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    body = {"touser": "openid1", "msgtype": "text", "text": {"content": "您好"}}
    api = "/cgi-bin/message/custom/send"
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 45015
    wecom_server.add_oa_message("openid1")
    codes = [(await _post(session, wecom_server, api, body, token))["errcode"] for _ in range(6)]
    assert codes == [0, 0, 0, 0, 0, 45047]
    assert len(wecom_server.custom_sent) == 5


async def test_injected_faults_come_first_and_are_used_up(
    wecom_server: FakePlatform, session: aiohttp.ClientSession
) -> None:
    token = await _token(session, wecom_server)
    api = "/cgi-bin/message/send"
    body = {"touser": "staff1", "msgtype": "text", "agentid": 1, "text": {"content": "x"}}
    wecom_server.fail_next(api, -1)
    wecom_server.http_status(api, 502)
    wecom_server.not_json(api)
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == -1
    async with session.post(f"{wecom_server.url}{api}", json=body) as response:
        assert response.status == 502
    async with session.post(f"{wecom_server.url}{api}", json=body) as response:
        assert response.content_type == "text/html"
    assert (await _post(session, wecom_server, api, body, token))["errcode"] == 0
    assert wecom_server.count(api) == 4
    assert wecom_server.requests[-1].json == body
    assert wecom_server.requests[-1].params == {"access_token": token}
    assert len(wecom_server.app_sent) == 1
