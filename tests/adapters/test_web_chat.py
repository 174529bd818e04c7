"""The web chat over a real server and real WebSockets on 127.0.0.1."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import WSCloseCode, web

from adapters.web import create_web_app, start_web
from adapters.web.config import WebSettings
from adapters.web.protocol import Hello
from adapters.web.server import CHAT, StoreList
from bot.types import HandoffReply, InboundMessage, Reply, TextReply
from knowledge.types import Citation
from tests.adapters.conftest import BOT_NAME, FIXED_NOW, Recorder, StartServer, join, receive

CITATION = Citation(doc_id="d1", source="faq.md", title="营业时间", version=2, chunk_id="c1")


def _cited(msg: InboundMessage) -> Reply:
    return TextReply(f"答:{msg.text}", citations=(CITATION,), quote=msg.sender.display_name)


async def test_healthz(start_server: StartServer, session: aiohttp.ClientSession) -> None:
    _, url = await start_server(Recorder())
    async with session.get(url + "healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_page_is_self_contained_and_escapes_names(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    _, url = await start_server(Recorder())
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert BOT_NAME in page
    assert "山茶花&lt;超市&gt;" in page
    assert "山茶花<超市>" not in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(assets) == ["/static/chat.css", "/static/chat.js", "/static/favicon.svg"]
    svg_namespace = 'xmlns="http://www.w3.org/2000/svg"'  # a name, never fetched
    for text in [page, *[await _get_text(session, url + a.lstrip("/")) for a in assets]]:
        text = text.replace(svg_namespace, "")
        assert not re.search(r"https?://", text), "the page must not load anything external"


async def _get_text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_one_to_one_round_trip(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    handler = Recorder(_cited)
    _, url = await start_server(handler)
    ws = await join(session, url, "m-1", "阿花", store_id="sh-01")
    await ws.send_json({"type": "message", "text": "  几点开门？ "})
    answer = await receive(ws)
    assert answer["from"] == "bot"
    assert answer["kind"] == "answer"
    assert answer["name"] == BOT_NAME
    assert answer["text"] == "答:几点开门？"
    assert answer["citations"] == [{"title": "营业时间"}], "titles only, never a file name"
    (msg,) = handler.seen
    assert answer["reply_to"] == msg.id
    assert uuid.UUID(msg.id)
    assert (msg.channel, msg.conversation, msg.text) == ("web", "m-1", "几点开门？")
    assert (msg.sender.external_id, msg.sender.display_name) == ("m-1", "阿花")
    assert not msg.is_group
    assert msg.store_id == "sh-01"
    assert msg.received_at == FIXED_NOW
    await ws.send_json({"type": "message", "text": "再问一次"})
    await receive(ws)
    assert handler.seen[1].id != msg.id, "every inbound message gets its own dedupe key"


async def test_handoff_is_marked(start_server: StartServer, session: aiohttp.ClientSession) -> None:
    _, url = await start_server(Recorder(lambda m: HandoffReply("正在为你转接人工", "摘要")))
    ws = await join(session, url, "m-1", "阿花")
    await ws.send_json({"type": "message", "text": "转人工"})
    frame = await receive(ws)
    assert (frame["kind"], frame["text"], frame["from"]) == ("handoff", "正在为你转接人工", "bot")
    assert "summary" not in json.dumps(frame), "the agent's summary is not for the member"


async def test_room_broadcasts_members_and_bot(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    handler = Recorder(_cited)
    _, url = await start_server(handler)
    alice = await join(session, url, "m-a", "阿花", room="门店群")
    bob = await join(session, url, "m-b", "阿宝", room="门店群")
    joined = await receive(alice)
    assert joined["kind"] == "notice"
    assert "阿宝" in joined["text"]

    await alice.send_json({"type": "message", "text": f"@{BOT_NAME} 周末有活动吗"})
    for ws, mine in ((alice, True), (bob, False)):
        said = await receive(ws)
        assert (said["from"], said["kind"], said["name"]) == ("member", "message", "阿花")
        assert said["text"] == f"@{BOT_NAME} 周末有活动吗"
        assert said["mine"] is mine
        answer = await receive(ws)
        assert answer["kind"] == "answer"
        assert answer["quote"] == "阿花"
        assert answer["reply_to"] == said["id"] == handler.seen[0].id
    msg = handler.seen[0]
    assert msg.is_group
    assert msg.mentioned_bot
    assert msg.conversation == "room:门店群"


async def test_mention_flag_only_for_at_bot_name(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    handler = Recorder()
    _, url = await start_server(handler)
    ws = await join(session, url, "m-a", "阿花", room="r1")
    for text in (f"请问@{BOT_NAME}", f"{BOT_NAME}你好", "@小 域"):
        await ws.send_json({"type": "message", "text": text})
        await receive(ws)  # the broadcast of the member's own message
        await receive(ws)  # the echo answer
    assert [m.mentioned_bot for m in handler.seen] == [True, False, False]


async def test_no_reply_sends_nothing_back(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    _, url = await start_server(Recorder())
    direct = await join(session, url, "m-1", "阿花")
    await direct.send_json({"type": "message", "text": "silent"})
    await direct.send_json({"type": "message", "text": "hi"})
    assert (await receive(direct))["text"] == "echo:hi", "NoReply must produce no frame"

    room = await join(session, url, "m-2", "阿宝", room="r1")
    await room.send_json({"type": "message", "text": "silent"})
    await room.send_json({"type": "message", "text": "hi"})
    texts = [(await receive(room))["text"] for _ in range(3)]
    assert texts == ["silent", "hi", "echo:hi"]


async def test_hostile_frames_get_errors_and_the_socket_keeps_working(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    _, url = await start_server(Recorder())
    ws = await session.ws_connect(url + "ws")
    await ws.send_json({"type": "message", "text": "hi"})
    assert (await receive(ws))["code"] == "no_hello"
    hostile = [
        ("{not json", "bad_json"),
        ("[" * 50_000, "bad_json"),  # nested past the recursion limit
        ("[1, 2]", "bad_frame"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"type": "hello", "name": "x"}', "missing_field"),
        ('{"type": "hello", "member_id": "bad id!", "name": "x"}', "bad_field"),
        ('{"type": "hello", "member_id": "m-1", "name": 42}', "bad_field"),
        ('{"type": "hello", "member_id": "m-1", "name": "  "}', "bad_field"),
    ]
    for raw, code in hostile:
        await ws.send_str(raw)
        frame = await receive(ws)
        assert (frame["type"], frame["code"]) == ("error", code), raw
        assert frame["error"]
    await ws.send_str(json.dumps({"type": "hello", "member_id": "m-1", "name": "阿花"}))
    await receive(ws)
    for raw, code in [
        (json.dumps({"type": "message", "text": "长" * 2001}), "text_too_long"),
        (json.dumps({"type": "message", "text": "  "}), "empty_text"),
        (json.dumps({"type": "message", "text": "a\x00b"}), "bad_field"),
        (json.dumps({"type": "message"}), "missing_field"),
    ]:
        await ws.send_str(raw)
        assert (await receive(ws))["code"] == code
    await ws.send_bytes(b"\x00\x01binary")
    assert (await receive(ws))["code"] == "binary_frame"
    await ws.send_json({"type": "message", "text": "长" * 2000})
    assert (await receive(ws))["text"] == "echo:" + "长" * 2000


async def test_binary_spam_is_closed_cleanly(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    _, url = await start_server(Recorder())
    ws = await session.ws_connect(url + "ws")
    errors = 0
    for _ in range(50):
        await ws.send_bytes(b"spam")
    while (msg := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
        errors += json.loads(msg.data)["code"] == "binary_frame"
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == WSCloseCode.POLICY_VIOLATION
    assert errors == 10
    async with session.get(url + "healthz") as resp:
        assert resp.status == 200


async def test_oversized_frame_closes_that_socket_only(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    _, url = await start_server(Recorder(), max_body_bytes=4096)
    other = await join(session, url, "m-2", "阿宝")
    ws = await join(session, url, "m-1", "阿花")
    await ws.send_str(json.dumps({"type": "message", "text": "x" * 5000}))
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == WSCloseCode.MESSAGE_TOO_BIG
    await other.send_json({"type": "message", "text": "还在吗"})
    assert (await receive(other))["text"] == "echo:还在吗"


async def test_handler_failure_is_an_error_frame(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    def flaky(msg: InboundMessage) -> Reply:
        if msg.text == "boom":
            raise RuntimeError("pipeline exploded")
        return TextReply(f"ok:{msg.text}")

    _, url = await start_server(Recorder(flaky))
    ws = await join(session, url, "m-1", "阿花")
    await ws.send_json({"type": "message", "text": "boom"})
    frame = await receive(ws)
    assert frame["type"] == "error"
    assert frame["code"] == "handler_failed"
    assert "exploded" not in frame["error"], "internal errors stay in the log"
    await ws.send_json({"type": "message", "text": "again"})
    assert (await receive(ws))["text"] == "ok:again"


async def test_leaving_and_switching_rooms_tell_the_room(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    _, url = await start_server(Recorder())
    alice = await join(session, url, "m-a", "阿花", room="r1")
    bob = await join(session, url, "m-b", "阿宝", room="r1")
    await receive(alice)  # 阿宝 joined
    await bob.send_json({"type": "hello", "member_id": "m-b", "name": "阿宝", "room": "r2"})
    assert "阿宝 离开了群聊" in (await receive(alice))["text"]
    assert "r2" in (await receive(bob))["text"]
    await bob.send_json({"type": "message", "text": "只在 r2"})
    assert (await receive(bob))["text"] == "只在 r2"
    await receive(bob)  # echo answer
    carol = await join(session, url, "m-c", "阿彩", room="r1")
    await receive(alice)  # 阿彩 joined
    await carol.close()
    assert "阿彩 离开了群聊" in (await receive(alice))["text"]
    await alice.send_json({"type": "message", "text": "还有人吗"})
    assert (await receive(alice))["text"] == "还有人吗", "r2's traffic never reached r1"


async def test_a_client_that_stops_reading_is_dropped_not_waited_for(
    start_server: StartServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    big = "大" * 100_000  # ~300 KB a frame: a few dozen fill the socket buffers
    _, url = await start_server(Recorder(lambda m: TextReply(big)), max_body_bytes=8192)
    reader = await join(session, url, "m-a", "阿花", room="r1")
    stalled = await join(session, url, "m-s", "不读", room="r1")  # never reads again
    assert "不读" in (await receive(reader))["text"]
    for turn in range(400):
        await reader.send_json({"type": "message", "text": f"q{turn}"})
        said = await receive(reader)
        if said["kind"] == "notice":
            assert "不读 离开了群聊" in said["text"]
            break
        assert said["text"] == f"q{turn}"
        assert (await receive(reader))["text"] == big
    else:
        raise AssertionError("the stalled client was never dropped")
    assert "stopped reading" in caplog.text
    await stalled.close()


async def test_citations_are_titles_only_once_each(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    other_file = Citation(
        doc_id="d2", source="faq-2.csv", title="营业时间", version=1, chunk_id="c2"
    )
    untitled = Citation(doc_id="d3", source="notes.md", title="", version=1, chunk_id="c3")
    reply = TextReply("答（来源：营业时间）", citations=(CITATION, other_file, untitled))
    _, url = await start_server(Recorder(lambda m: reply))
    ws = await join(session, url, "m-1", "阿花")
    await ws.send_json({"type": "message", "text": "几点开门"})
    answer = await receive(ws)
    assert answer["citations"] == [{"title": "营业时间"}]
    raw = json.dumps(answer, ensure_ascii=False)
    assert "source" not in raw
    assert ".md" not in raw
    assert ".csv" not in raw


async def test_a_message_names_the_store_it_asks_about(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    handler = Recorder()
    _, url = await start_server(handler)
    ws = await join(session, url, "m-1", "阿花", store_id="sh-01")
    for frame in (
        {"type": "message", "text": "a", "store_id": "sh-02"},  # the store picker's choice
        {"type": "message", "text": "b", "store_id": None},  # no choice: the hello's store
        {"type": "message", "text": "c"},
    ):
        await ws.send_json(frame)
        await receive(ws)
    assert [m.store_id for m in handler.seen] == ["sh-02", "sh-01", "sh-01"]
    await ws.send_json({"type": "message", "text": "d", "store_id": "../x"})
    assert (await receive(ws))["code"] == "bad_field"


@pytest.fixture
async def custom_server() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Start a web chat with a store list and suggestions; cleaned up after the test."""
    runners: list[web.AppRunner] = []

    async def start(
        stores: StoreList | None = None, suggestions: tuple[str, ...] = (), brand: str = "禾町"
    ) -> str:
        config = WebSettings(
            host="127.0.0.1", port=0, max_body_bytes=65_536, suggestions=suggestions
        )
        app = create_web_app(Recorder(), config, bot_name=BOT_NAME, brand=brand, stores=stores)
        runner, url = await start_web(app, config)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_store_menu_is_read_from_the_directory_on_each_request(
    custom_server: Callable[..., Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    directory = [("sh-xuhui", "上海徐汇店")]
    url = await custom_server(stores=lambda: directory)
    async with session.get(url + "api/stores") as resp:
        assert resp.status == 200
        assert await resp.json() == {"stores": [{"id": "sh-xuhui", "name": "上海徐汇店"}]}
    directory.append(("hz-xihu", "杭州西湖店"))  # e.g. stores.csv re-ingested while serving
    async with session.get(url + "api/stores") as resp:
        assert [s["id"] for s in (await resp.json())["stores"]] == ["sh-xuhui", "hz-xihu"]
    bare = await custom_server()
    async with session.get(bare + "api/stores") as resp:
        assert await resp.json() == {"stores": []}


async def test_page_shows_the_brand_and_the_suggested_questions(
    custom_server: Callable[..., Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    url = await custom_server(suggestions=("积分怎么算？", "<b>几点</b>关门"), brand="禾町生活超市")
    page = await _get_text(session, url)
    assert "<title>禾町生活超市 · 会员客服</title>" in page
    assert "Siyu" not in page, "a member never sees the project's name when a brand is set"
    chips = re.findall(r'<button type="button" class="chip">([^<]*)</button>', page)
    assert chips == ["积分怎么算？", "&lt;b&gt;几点&lt;/b&gt;关门"]
    plain = await _get_text(session, await custom_server())
    assert 'class="chip"' not in plain
    assert 'id="chips" class="chips" aria-label="常见问题"></nav>' in plain, "empty: hidden"


async def test_a_lone_surrogate_is_refused_to_its_sender_and_the_room_carries_on(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    handler = Recorder()
    _, url = await start_server(handler)
    alice = await join(session, url, "m-a", "阿花", room="r1")
    bob = await join(session, url, "m-b", "阿宝", room="r1")
    mallory = await join(session, url, "m-m", "坏人", room="r1")
    for ws in (alice, alice, bob):  # who joined after whom
        assert (await receive(ws))["kind"] == "notice"
    await mallory.send_str('{"type": "message", "text": "\\ud800"}')  # the JSON escape, raw
    refused = await receive(mallory)
    assert (refused["type"], refused["code"]) == ("error", "bad_encoding")
    assert "U+D800" in refused["error"]
    await alice.send_json({"type": "message", "text": "大家还在吗"})
    for ws in (alice, bob, mallory):  # the refused frame reached nobody; the room still works
        said = await receive(ws)
        assert (said["kind"], said["text"]) == ("message", "大家还在吗")
        assert (await receive(ws))["text"] == "echo:大家还在吗"
    assert [m.text for m in handler.seen] == ["大家还在吗"]


async def test_a_reply_that_is_not_unicode_still_reaches_every_member(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    # A bot reply the protocol never checked (an LLM's garbage) once killed every writer of the
    # room with the same UnicodeEncodeError; now it goes out as JSON escapes.
    _, url = await start_server(Recorder(lambda m: TextReply(f"答\ud800{m.text}")))
    alice = await join(session, url, "m-a", "阿花", room="r1")
    bob = await join(session, url, "m-b", "阿宝", room="r1")
    await receive(alice)  # 阿宝 joined
    for turn in ("一", "二"):
        await alice.send_json({"type": "message", "text": turn})
        for ws in (alice, bob):
            assert (await receive(ws))["text"] == turn
            assert (await receive(ws))["text"] == f"答\ud800{turn}"


async def test_one_broken_writer_never_stops_the_rooms_other_members(
    start_server: StartServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    app, url = await start_server(Recorder())
    alice = await join(session, url, "m-a", "阿花", room="r1")
    bob = await join(session, url, "m-b", "阿宝", room="r1")
    await receive(alice)  # 阿宝 joined
    hub = app[CHAT].hub
    broken = hub.connect(_BrokenSocket(), None)  # type: ignore[arg-type]
    hub.identify(broken, Hello(member_id="m-x", name="坏掉的", room="r1"))
    for turn in ("一", "二"):
        await alice.send_json({"type": "message", "text": turn})
        for ws in (alice, bob):
            assert (await receive(ws))["text"] == turn
            assert (await receive(ws))["text"] == f"echo:{turn}"
    assert caplog.text.count("a socket's writer failed") == 1, "logged once, for that socket"
    assert not broken.send({"type": "ping"}), "the broken peer takes no more frames"


class _BrokenSocket:
    """Stands in for aiohttp's socket where a write fails with an error no network raises (a
    bug in a writer): only the writer of this one peer may end."""

    async def send_str(self, data: str) -> None:
        raise RuntimeError("a writer bug")


async def test_emoji_reach_the_room_as_sent(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    handler = Recorder()
    _, url = await start_server(handler)
    family, flags = (
        "👨\u200d👩\u200d👧",
        "🇨🇳 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    )
    alice = await join(session, url, "m-a", f"阿花{family}", room="r1")
    await alice.send_json({"type": "message", "text": f"{family} {flags} ❤\ufe0f"})
    said = await receive(alice)
    assert (said["name"], said["text"]) == (f"阿花{family}", f"{family} {flags} ❤\ufe0f")
    assert handler.seen[0].text == f"{family} {flags} ❤\ufe0f"
