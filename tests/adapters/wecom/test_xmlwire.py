"""Safe callback XML: hostile documents refused, real payloads flattened, replies round-tripped."""

from __future__ import annotations

import random

import pytest

from adapters.wecom.errors import MalformedXML
from adapters.wecom.xmlwire import MAX_CALLBACK_BYTES, build_xml, parse_xml, text_reply_xml

TEXT_CALLBACK = (
    "<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[oMember]]>"
    "</FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[会员日是哪天？]]></Content><MsgId>1234567890123456</MsgId></xml>"
)

# --- real payloads ---------------------------------------------------------------------------


def test_a_text_callback_flattens_to_its_fields() -> None:
    assert parse_xml(TEXT_CALLBACK.encode()) == {
        "ToUserName": "gh_123",
        "FromUserName": "oMember",
        "CreateTime": "1348831860",
        "MsgType": "text",
        "Content": "会员日是哪天？",
        "MsgId": "1234567890123456",
    }


def test_str_bodies_and_an_xml_declaration_are_accepted() -> None:
    declared = '<?xml version="1.0" encoding="UTF-8"?>\n' + TEXT_CALLBACK
    assert parse_xml(declared)["Content"] == "会员日是哪天？"
    assert parse_xml(declared.encode())["Content"] == "会员日是哪天？"


def test_nested_elements_flatten_as_parent_dot_child() -> None:
    body = (
        "<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_push]]></Event>"
        "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
        "<ScanResult><![CDATA[SKU-2024-001]]></ScanResult></ScanCodeInfo></xml>"
    )
    assert parse_xml(body) == {
        "MsgType": "event",
        "Event": "scancode_push",
        "ScanCodeInfo.ScanType": "qrcode",
        "ScanCodeInfo.ScanResult": "SKU-2024-001",
    }


def test_repeated_siblings_are_indexed_not_overwritten() -> None:
    body = (
        "<xml><SendPicsInfo><Count>2</Count><PicList>"
        "<item><PicMd5Sum><![CDATA[aaa]]></PicMd5Sum></item>"
        "<item><PicMd5Sum><![CDATA[bbb]]></PicMd5Sum></item>"
        "</PicList></SendPicsInfo><MsgId>1</MsgId><MsgId>2</MsgId></xml>"
    )
    assert parse_xml(body) == {
        "SendPicsInfo.Count": "2",
        "SendPicsInfo.PicList.item.PicMd5Sum": "aaa",
        "SendPicsInfo.PicList.item#2.PicMd5Sum": "bbb",
        "MsgId": "1",
        "MsgId#2": "2",
    }


def test_empty_elements_read_as_empty_and_comments_vanish() -> None:
    body = "<xml><!-- note --><Content></Content><Empty/><A>x<!-- c -->y</A></xml>"
    assert parse_xml(body) == {"Content": "", "Empty": "", "A": "xy"}


# --- hostile and broken documents --------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + "]><xml><Content>&lol9;</Content></xml>"
)
QUADRATIC_BLOWUP = (
    f'<!DOCTYPE xml [<!ENTITY a "{"a" * 20_000}">]><xml><Content>{"&a;" * 2_000}</Content></xml>'
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><Content>&xxe;</Content></xml>"
)
EXTERNAL_DTD = '<!DOCTYPE xml SYSTEM "http://203.0.113.9/evil.dtd"><xml><A>1</A></xml>'
PARAMETER_ENTITY = (
    '<!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><xml><A>1</A></xml>'
)
PLAIN_DTD = "<!DOCTYPE xml><xml><Content>hi</Content></xml>"


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, QUADRATIC_BLOWUP, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY, PLAIN_DTD],
    ids=["billion-laughs", "quadratic", "xxe-file", "external-dtd", "parameter-entity", "dtd"],
)
def test_any_dtd_or_entity_is_refused_before_expansion(body: str) -> None:
    with pytest.raises(MalformedXML) as caught:
        parse_xml(body, max_bytes=1_000_000)
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd leaks into the message


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not xml at all",
        b"<xml><Content>hi</xml>",  # mismatched tag
        b"<xml><Content>hi</Content>",  # truncated
        b"<xml><Content><![CDATA[hi</Content></xml>",  # unterminated CDATA
        b"<xml></xml><xml></xml>",  # two roots
        b"<xml><A>&amp</A></xml>",  # bad reference
        b"<xml><A>&undefined;</A></xml>",  # undeclared entity
        b"<xml><A>\x01</A></xml>",  # C0 control character
        b"<xml><A>&#1;</A></xml>",  # reference to a forbidden character
    ],
)
def test_documents_that_are_not_well_formed_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedXML, match="XML"):
        parse_xml(body)


@pytest.mark.parametrize(
    "body",
    [
        "<xml><Content>会员</Content></xml>".encode("gbk"),
        '<?xml version="1.0" encoding="GBK"?><xml><A>会员</A></xml>'.encode("gbk"),
        b'<?xml version="1.0" encoding="nonesuch"?><xml><A>x</A></xml>',
        b"<xml><A>\xff\xfe\xfd</A></xml>",
    ],
    ids=["gbk-undeclared", "gbk-declared", "unknown-encoding", "invalid-utf8"],
)
def test_bodies_that_are_not_utf8_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        parse_xml(body)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("<xml><Content>好\ud800</Content></xml>", r"U\+D800 at character 16"),
        ("<xml><Content>\udfff</Content></xml>".encode("utf-8", "surrogatepass"), "not well"),
        ("<xml><Content>&#xD800;</Content></xml>", "invalid character"),
        (b"<xml><Content>&#55296;</Content></xml>", "invalid character"),
    ],
    ids=["str-surrogate", "utf8-encoded-surrogate", "hex-reference", "decimal-reference"],
)
def test_text_that_is_not_unicode_is_refused(body: str | bytes, says: str) -> None:
    with pytest.raises(MalformedXML, match=says):
        parse_xml(body)


@pytest.mark.parametrize(
    "text",
    ["👨\u200d👩\u200d👧", "🇨🇳", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"],
)
def test_emoji_round_trip(text: str) -> None:
    assert parse_xml(build_xml({"Content": text}).encode()) == {"Content": text}


@pytest.mark.parametrize(
    "body", ["<root><A>1</A></root>", "<XML><A>1</A></XML>", '<xml xmlns="urn:x"><A>1</A></xml>']
)
def test_a_root_other_than_xml_is_refused(body: str) -> None:
    with pytest.raises(MalformedXML, match="root element"):
        parse_xml(body)


def test_a_ten_megabyte_body_is_refused_without_parsing() -> None:
    body = b"<xml><Content>" + b"a" * (10 * 1024 * 1024) + b"</Content></xml>"
    with pytest.raises(MalformedXML, match="limit"):
        parse_xml(body)


def test_the_size_limit_counts_utf8_bytes_and_is_configurable() -> None:
    body = "<xml><A>" + "会" * 30 + "</A></xml>"  # 18 + 90 bytes
    assert parse_xml(body, max_bytes=108)["A"] == "会" * 30
    with pytest.raises(MalformedXML, match="108 bytes"):
        parse_xml(body, max_bytes=107)
    assert MAX_CALLBACK_BYTES == 64 * 1024


@pytest.mark.parametrize("depth", [7, 20_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    body = "<xml>" + "<a>" * depth + "x" + "</a>" * depth + "</xml>"
    with pytest.raises(MalformedXML, match="nested deeper"):
        parse_xml(body, max_bytes=len(body))


def test_six_levels_of_nesting_are_accepted() -> None:
    body = "<xml>" + "<a>" * 5 + "x" + "</a>" * 5 + "</xml>"
    assert parse_xml(body) == {"a.a.a.a.a": "x"}


# --- building replies --------------------------------------------------------------------------


def test_text_reply_is_the_platform_layout() -> None:
    assert text_reply_xml("oMember", "gh_123", "会员日是每周三", 1700000000) == (
        "<xml><ToUserName><![CDATA[oMember]]></ToUserName>"
        "<FromUserName><![CDATA[gh_123]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[会员日是每周三]]></Content></xml>"
    )


def test_cdata_terminator_inside_a_value_is_split_and_survives() -> None:
    text = build_xml({"Content": "a]]>b]]>"})
    assert text == "<xml><Content><![CDATA[a]]]]><![CDATA[>b]]]]><![CDATA[>]]></Content></xml>"
    assert parse_xml(text) == {"Content": "a]]>b]]>"}


def test_injection_through_a_value_stays_text() -> None:
    evil = "]]></Content><MsgType>image</MsgType><Content><![CDATA["
    assert parse_xml(build_xml({"MsgType": "text", "Content": evil})) == {
        "MsgType": "text",
        "Content": evil,
    }


def test_forbidden_characters_are_dropped_and_line_ends_normalised() -> None:
    value = "a\x00b\x07c\x1fd\tz\r\ny\rx\n\ufffe\uffff\ud800🎁"
    assert parse_xml(build_xml({"Content": value})) == {"Content": "abcd\tz\ny\nx\n🎁"}


def test_dotted_and_indexed_keys_nest_and_round_trip() -> None:
    fields: dict[str, str | int] = {
        "MsgType": "news",
        "ArticleCount": 2,
        "Articles.item.Title": "三月会员日",
        "Articles.item.Url": "https://example.com/a?x=1&y=<2>",
        "Articles.item#2.Title": "新品上市",
        "Image.MediaId": "m-1",
    }
    text = build_xml(fields)
    assert "<Articles><item><Title>" in text
    assert "</item><item><Title><![CDATA[新品上市]]>" in text
    assert "<ArticleCount>2</ArticleCount>" in text
    assert parse_xml(text) == {key: str(value) for key, value in fields.items()}


@pytest.mark.parametrize(
    "fields",
    [
        {"": "x"},
        {"1abc": "x"},
        {"a b": "x"},
        {"<x>": "x"},
        {"a..b": "x"},
        {"A": "1", "A.B": "2"},
        {"A.B": "1", "A": "2"},
        {"A": True},
        {"A": 1.5},
    ],
)
def test_bad_keys_values_and_clashes_are_value_errors(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"'"):
        build_xml(fields)  # type: ignore[arg-type]


def test_property_random_fields_round_trip() -> None:
    rng = random.Random(2048)
    alphabet = "abc XYZ 019<>&'\"]]>\n\t会员积分优惠券🎁é"
    for _ in range(200):
        fields: dict[str, str | int] = {
            f"F{index}": "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
            for index in range(rng.randrange(1, 8))
        }
        fields["CreateTime"] = rng.randrange(-(10**12), 10**12)
        expected = {key: str(value) for key, value in fields.items()}
        assert parse_xml(build_xml(fields)) == expected
