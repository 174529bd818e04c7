"""A guard: campaigns read the addresses adapters recorded (:mod:`bot.contact`), never parse
adapter strings back — no session keys, no channel-name prefixes like ``"kf."``, no splitting
on ``":"``. It scans the source of every ``campaigns`` module (the syntax tree: comments and
prose in docstrings do not count) and proves on known-bad lines that it would notice.

A line that parses what an operator typed (not what an adapter wrote) says so with the comment
``# operator syntax``, and is not counted: the exemption is visible where it is used."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import campaigns

CHANNEL_PREFIX = re.compile(r"^(kf|oa|wecom|wechat)\.")
"""Adapters name channels ``<route>.<account>`` (``kf.main``, ``oa.brand``)."""


def offences(source: str) -> list[str]:
    """What in ``source`` parses adapter strings, one entry per finding."""
    found = []
    exempt = {n for n, text in enumerate(source.splitlines(), 1) if "# operator syntax" in text}
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if line in exempt:
            continue
        if isinstance(node, ast.Attribute | ast.Name) and "session_key" in (
            node.attr if isinstance(node, ast.Attribute) else node.id
        ):
            found.append(f"line {line}: reads a session key")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if CHANNEL_PREFIX.match(node.value):
                found.append(f"line {line}: channel prefix {node.value!r}")
        elif isinstance(node, ast.Call) and _splits_on_colon(node):
            found.append(f"line {line}: splits on ':'")
    return found


def _splits_on_colon(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in ("split", "rsplit", "partition", "rpartition")
        and any(isinstance(a, ast.Constant) and a.value == ":" for a in call.args)
    )


def test_campaigns_never_parse_adapter_strings() -> None:
    package = Path(campaigns.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 10
    found = {
        str(path.relative_to(package)): bad
        for path in modules
        if (bad := offences(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_guard_notices_what_it_forbids() -> None:
    bad = """
kf_ids = [a.member_id for a in ids if a.channel.startswith("kf.")]
WINDOW_ROUTES = {"kf.": "kf", "oa.": "oa"}
parts = session_key.split(":")
stmt = sa.select(LOG.c.session_key)
"""
    assert sorted(offences(bad)) == [
        "line 2: channel prefix 'kf.'",
        "line 3: channel prefix 'kf.'",
        "line 3: channel prefix 'oa.'",
        "line 4: reads a session key",
        "line 4: splits on ':'",
        "line 5: reads a session key",
    ]
    marked = 'bridge, _, conversation = name.partition(":")  # operator syntax, documented\n'
    assert offences(marked) == []
    assert offences(marked.replace("# operator syntax", "#")) == ["line 1: splits on ':'"]
