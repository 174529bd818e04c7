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
        ('{"type": "message", "text": "a\\u200bb"}', "bad_field"),  # zero-width space
        ('{"type": "message", "text": "a\\udb40\\udc41b"}', "bad_field"),  # a stray tag char
        # Text that is not Unicode: a surrogate escape without its partner, anywhere.
        ('{"type": "message", "text": "a\\ud800b"}', "bad_encoding"),
        ('{"type": "message", "text": "\\udfff"}', "bad_encoding"),
        ('{"type": "message", "text": "\\ud83d\\ud83d"}', "bad_encoding"),
        (hello(name="\ud800"), "bad_encoding"),
        (hello(room="r\udc00"), "bad_encoding"),
        ('{"type": "message", "text": "ok", "x\\ud800": 1}', "bad_encoding"),
        ('{"type": "message", "text": "a\ud800"}', "bad_encoding"),  # the character itself
    ],
)
def test_refused_frames(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(raw)
    assert caught.value.code == code
    assert caught.value.message


def test_bad_encoding_names_the_field_and_the_character() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame('{"type": "message", "text": "好\\ud800"}')
    assert caught.value.code == "bad_encoding"
    assert "text" in caught.value.message
    assert "U+D800" in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "👨\u200d👩\u200d👧",  # ZWJ family
        "🏳\ufe0f\u200d🌈",  # variation selector + ZWJ
        "🇨🇳🇯🇵",  # regional-indicator flags
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland: tags
        "👍🏽 1\ufe0f\u20e3 ❤\ufe0f",  # skin tone, keycap, heart
        "\U0001f600",  # a pair of surrogate escapes is one character, not two lone ones
        "می\u200cخواهم",  # ZWNJ inside a Persian word
    ],
)
def test_emoji_and_joiners_are_text_not_controls(text: str) -> None:
    for raw in (json.dumps({"type": "message", "text": text}), hello(name=text)):
        frame = parse_frame(raw)
        assert (frame.text if isinstance(frame, ChatText) else frame.name) == text
