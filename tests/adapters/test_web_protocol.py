"""Parsing the web chat's client frames: what is accepted, normalised and refused."""

from __future__ import annotations

import json

import pytest

from adapters.web.protocol import ChatText, Hello, ProtocolError, parse_frame


def hello(**fields: object) -> str:
    return json.dumps({"type": "hello", "member_id": "m-1", "name": "阿花"} | fields)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (hello(), Hello(member_id="m-1", name="阿花")),
        (
            hello(room="  门店群 ", store_id="sh-01"),
            Hello(member_id="m-1", name="阿花", room="门店群", store_id="sh-01"),
        ),
        (hello(room="   "), Hello(member_id="m-1", name="阿花")),
        (
            hello(store_id="上海徐汇店（旗舰）"),
            Hello(member_id="m-1", name="阿花", store_id="上海徐汇店（旗舰）"),
        ),
        (hello(room=None, name=" 阿花 "), Hello(member_id="m-1", name="阿花")),
        ('{"type": "message", "text": " 第一行\\n第二行 "}', ChatText(text="第一行\n第二行")),
        (
            '{"type": "message", "text": "几点关门", "store_id": "sh-01"}',
            ChatText(text="几点关门", store_id="sh-01"),
        ),
        ('{"type": "message", "text": "几点关门", "store_id": null}', ChatText(text="几点关门")),
    ],
)
def test_accepted_frames(raw: str, expected: object) -> None:
    assert parse_frame(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('"just a string"', "bad_frame"),
        ('{"text": "no type"}', "unknown_type"),
        (hello(room=7), "bad_field"),
        (hello(room="群" * 33), "bad_field"),
        (hello(name="a\u202eb"), "bad_field"),  # bidi override: spoofs names
        (hello(store_id="../etc"), "bad_field"),
        (hello(store_id="a\nb"), "bad_field"),
        (hello(store_id=" sh-01"), "bad_field"),
        (hello(store_id="店" * 65), "bad_field"),
        (hello(member_id="m" * 65), "bad_field"),
        ('{"type": "message", "text": null}', "empty_text"),
        ('{"type": "message", "text": ["a"]}', "bad_field"),
        ('{"type": "message", "text": "a", "store_id": "a/b"}', "bad_field"),
        ('{"type": "message", "text": "a", "store_id": 3}', "bad_field"),
    ],
)
def test_refused_frames(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(raw)
    assert caught.value.code == code
    assert caught.value.message
