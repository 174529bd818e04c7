"""Safe XML for WeChat / WeCom callbacks and passive replies.

Callbacks arrive as a flat ``<xml>`` document of CDATA fields. :func:`parse_xml` reads one with
defusedxml (no DTD, no entities, no external references: XML bombs and XXE are refused before any
expansion) and returns its fields as a flat ``dict``; :func:`build_xml` writes the reverse.

Key scheme, shared by both directions so that ``parse_xml(build_xml(f)) == f``:

- a top-level element ``<MsgType>`` is the key ``"MsgType"``;
- a nested element is keyed by its path: ``<ScanCodeInfo><ScanType>`` is
  ``"ScanCodeInfo.ScanType"``;
- a repeated sibling gets an index from its second occurrence on: ``<item>``, ``<item>`` are
  ``"item"``, ``"item#2"`` (``SendPicsInfo.PicList.item#2.PicMd5Sum``), so nothing is lost and a
  duplicated field never silently overwrites the first one.

Text that is not Unicode never gets in: a lone surrogate cannot be written in UTF-8 bytes nor as
a character reference (``&#xD800;`` is not an XML character), so expat refuses both, and a
``str`` document carrying one is refused before parsing with the character named. Every such
refusal is a :class:`MalformedXML`, a 400.

XML 1.0 cannot carry most C0 control characters (not even as ``&#1;``), and every XML parser
turns ``\\r\\n`` and ``\\r`` into ``\\n``. :func:`build_xml` therefore drops the characters XML
forbids and normalises line ends itself, so what it writes is exactly what the receiver reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as defused_et

from adapters.wecom.errors import MalformedXML
from bot.text import describe_unencodable

MAX_CALLBACK_BYTES = 64 * 1024
"""Callbacks are a few hundred bytes; anything near this limit is hostile or broken."""

MAX_DEPTH = 6
"""Deepest real payload is SendPicsInfo/PicList/item/PicMd5Sum (4 below the root)."""

ROOT_TAG = "xml"

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:#[0-9]+)?")
# Everything outside XML 1.0's Char production: C0 controls other than \t \n \r, lone surrogates,
# U+FFFE and U+FFFF.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_Tree = dict[str, "_Tree | str"]


def parse_xml(body: bytes | str, *, max_bytes: int = MAX_CALLBACK_BYTES) -> dict[str, str]:
    """The fields of a callback's ``<xml>`` document, CDATA unwrapped (see the module's key scheme).

    Raises :class:`MalformedXML` for a body over ``max_bytes``, any DTD, entity declaration or
    external reference, a document that is not well-formed or not UTF-8 (or another encoding it
    declares), text that is not Unicode (a lone surrogate), a root other than ``<xml>``, or
    nesting deeper than :data:`MAX_DEPTH`.
    """
    size = len(body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body)
    if size > max_bytes:
        raise MalformedXML(f"body of {size} bytes is over the {max_bytes}-byte limit")
    if isinstance(body, str) and (problem := describe_unencodable(body)) is not None:
        raise MalformedXML(f"the document is not Unicode text: {problem}")
    root = _parse_root(body)
    if root.tag != ROOT_TAG:
        raise MalformedXML(f"root element is <{root.tag}>, expected <{ROOT_TAG}>")
    fields: dict[str, str] = {}
    _flatten(root, "", 1, fields)
    return fields


def build_xml(fields: Mapping[str, str | int]) -> str:
    """An ``<xml>`` document of ``fields``: strings as CDATA, ints bare; the inverse of parse_xml.

    Dotted keys nest (``"Image.MediaId"`` → ``<Image><MediaId>``) and ``#n`` suffixes repeat a
    sibling. Characters XML 1.0 forbids are dropped and line ends become ``\\n`` (see the module
    docstring); a ``]]>`` inside a string is split across two CDATA sections. Raises ``ValueError``
    for a key that is not a dotted path of XML names or that is both a value and a parent.
    """
    tree: _Tree = {}
    for key, value in fields.items():
        _insert(tree, key, value)
    return f"<{ROOT_TAG}>{_render(tree)}</{ROOT_TAG}>"


def text_reply_xml(to_user: str, from_user: str, content: str, create_time: int) -> str:
    """The passive text reply: ``to_user`` is the member's openid, ``from_user`` our account id."""
    return build_xml(
        {
            "ToUserName": to_user,
            "FromUserName": from_user,
            "CreateTime": create_time,
            "MsgType": "text",
            "Content": content,
        }
    )


def _parse_root(body: bytes | str) -> Element:
    try:
        root: Element = defused_et.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except ParseError as exc:
        raise MalformedXML(f"not well-formed XML: {exc}") from exc
    except (ValueError, LookupError) as exc:
        # defusedxml's DTDForbidden/EntitiesForbidden/ExternalReferenceForbidden are ValueErrors;
        # expat raises ValueError/LookupError for multi-byte or unknown declared encodings.
        raise MalformedXML(f"refused XML: {type(exc).__name__}: {exc}") from exc
    return root


def _flatten(parent: Element, prefix: str, depth: int, out: dict[str, str]) -> None:
    if depth > MAX_DEPTH:
        raise MalformedXML(f"elements nested deeper than {MAX_DEPTH} levels")
    seen: dict[str, int] = {}
    for child in parent:
        count = seen[child.tag] = seen.get(child.tag, 0) + 1
        key = f"{prefix}{child.tag}" if count == 1 else f"{prefix}{child.tag}#{count}"
        if len(child):
            _flatten(child, f"{key}.", depth + 1, out)
        else:
            out[key] = child.text or ""


def _insert(tree: _Tree, key: str, value: str | int) -> None:
    segments = key.split(".")
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise ValueError(f"not a dotted path of XML names: {key!r}")
    node = tree
    for segment in segments[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise ValueError(f"{key!r}: {segment!r} already holds a value")
        node = child
    if segments[-1] in node:
        raise ValueError(f"{key!r} clashes with another key")
    node[segments[-1]] = _text(key, value)


def _text(key: str, value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{key!r}: value must be str or int, not {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    clean = _NOT_XML_CHAR.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    return "<![CDATA[" + clean.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _render(tree: _Tree) -> str:
    parts: list[str] = []
    for segment, node in tree.items():
        tag = segment.partition("#")[0]
        inner = node if isinstance(node, str) else _render(node)
        parts.append(f"<{tag}>{inner}</{tag}>")
    return "".join(parts)
