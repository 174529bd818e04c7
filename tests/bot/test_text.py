"""Unencodable text and stray controls (bot.text): what every adapter refuses at the edge, and the
emoji it must never refuse."""

from __future__ import annotations

import json

import pytest

from bot.text import describe_unencodable, describe_unencodable_json, encodable, stray_control

FAMILY = "👨\u200d👩\u200d👧"
SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
EMOJI = [
    FAMILY,
    "🏳\ufe0f\u200d🌈",  # variation selector + ZWJ
    "🇨🇳🇯🇵",  # regional-indicator flags
    SCOTLAND,  # tag characters (Cf) after a black flag
    "👍🏽",  # skin tone
    "1\ufe0f\u20e3",  # keycap
    "❤\ufe0f",
    "می\u200cخواهم",  # ZWNJ inside a Persian word
]


@pytest.mark.parametrize("text", EMOJI)
def test_emoji_are_encodable_and_not_controls(text: str) -> None:
    assert encodable(text)
    assert describe_unencodable(text) is None
    assert stray_control(text) is None
    assert describe_unencodable_json(json.dumps({"text": text})) is None


@pytest.mark.parametrize(
    ("text", "described"),
    [
        ("\ud800", "lone surrogate U+D800 at character 1"),
        ("好\udc00吗", "lone surrogate U+DC00 at character 2"),
        ("\ud83d\ude00", "lone surrogate U+D83D at character 1"),  # a pair of code points, not 😀
    ],
)
def test_surrogates_are_not_encodable(text: str, described: str) -> None:
    assert not encodable(text)
    assert describe_unencodable(text) == described
    with pytest.raises(UnicodeEncodeError):
        text.encode("utf-8")  # what encodable() predicts


@pytest.mark.parametrize(
    "text", ["a\u202eb", "a\u200bb", "a\xadb", "a\u2028b", "a\x00b", "a\U000e0041b", "\U000e007f"]
)
def test_invisible_and_control_characters_are_stray(text: str) -> None:
    assert stray_control(text) == text.strip("ab")


def test_allowed_controls() -> None:
    assert stray_control("行一\n行二\t", allow="\n\t") is None
    assert stray_control("行一\r\n行二", allow="\n\t") == "\r"


@pytest.mark.parametrize(
    ("raw", "described"),
    [
        ('{"text": "a\\ud800"}', "text: lone surrogate U+D800 at character 2"),
        ('{"sender": {"name": "\\udfff"}}', "sender.name: lone surrogate U+DFFF at character 1"),
        ('{"sender": {"\\ud800": 1}}', "sender key: lone surrogate U+D800 at character 1"),
        ('[1, ["x", "\\ud83d"]]', "[1][1]: lone surrogate U+D83D at character 1"),
        ('"\\udc00"', "value: lone surrogate U+DC00 at character 1"),
        (b'{"text": "\\ud800"}', "text: lone surrogate U+D800 at character 1"),
    ],
)
def test_json_with_lone_surrogate_escapes_is_described(raw: str | bytes, described: str) -> None:
    assert describe_unencodable_json(raw) == described


@pytest.mark.parametrize(
    "raw",
    [
        '{"text": "\\ud83d\\ude00"}',  # a pair: one emoji
        '{"text": "\\\\ud800"}',  # an escaped backslash: six ordinary characters
        "{not json",
        "[" * 100_000,  # past the recursion limit
        '{"n": ' + "9" * 5000 + "}",  # past the int-string conversion limit
        b"\xff\xfe",
    ],
)
def test_json_without_unencodable_text_is_not_described(raw: str | bytes) -> None:
    assert describe_unencodable_json(raw) is None
