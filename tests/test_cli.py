"""The ``siyu`` command line, run as a member of staff would: in-process for the quick commands,
and ``siyu demo`` as a real subprocess serving the web chat on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from bot.cli import app

FAQ_CSV = (
    "question,answer,variants\n会员积分怎么兑换？,积分满100分可抵扣1元。,积分怎么用|积分能换什么\n"
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings for the CLI: hash embeddings and a data dir in tmp; no developer .env."""
    monkeypatch.chdir(tmp_path)
    values = {
        "SIYU_DATA_DIR": str(tmp_path / "data"),
        "SIYU_EMBEDDING": "hash",
        "SIYU_LLM_MODEL": "",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_ingest_docs_and_ask(env: dict[str, str], tmp_path: Path) -> None:
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    out = run("ingest", str(faq), "--tags", "会员")
    assert "faq.csv: 1 chunks, v1" in out
    assert "unchanged" in run("ingest", str(faq), "--tags", "会员")
    assert "faq.csv" in run("docs")
    answer = run("ask", "积分怎么用")
    assert "积分满100分可抵扣1元。" in answer
    assert "found=True" in answer


def test_ingest_reports_a_broken_file_and_goes_on(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"not a zip at all")
    good = tmp_path / "faq.csv"
    good.write_text(FAQ_CSV, encoding="utf-8")
    out = run("ingest", str(broken), str(good))
    assert "✗ broken.docx" in out
    assert "✓ faq.csv" in out


def test_ingest_rejects_a_bad_date(env: dict[str, str], tmp_path: Path) -> None:
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest", str(faq), "--valid-to", "next tuesday"])
    assert result.exit_code != 0


def test_eval_retrieval_prints_json(env: dict[str, str], tmp_path: Path) -> None:
    faq = tmp_path / "faq.jsonl"
    queries = tmp_path / "queries.jsonl"
    rows = [("f1", "信用卡怎么还款"), ("f2", "贷款利息是多少"), ("f3", "怎么修改手机号")]
    faq.write_text(
        "".join(json.dumps({"faq_id": i, "faq_question": q}) + "\n" for i, q in rows), "utf-8"
    )
    queries.write_text(
        json.dumps({"query": "贷款的利息多少", "faq_id": "f2"}) + "\n", encoding="utf-8"
    )
    report = json.loads(run("eval", "retrieval", "--faq", str(faq), "--queries", str(queries)))
    assert report["queries"] == 1
    assert report["recall@1"] == 1.0


async def test_demo_loads_the_brand_and_serves_the_web_chat(
    env: dict[str, str], tmp_path: Path
) -> None:
    siyu = Path(sys.executable).with_name("siyu")
    environ = {**os.environ, **env, "SIYU_WEB_PORT": "0"}
    proc = await asyncio.create_subprocess_exec(
        str(siyu), "demo", cwd=tmp_path, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(120):
            while not (match := re.search(r"(http://127\.0\.0\.1:\d+/)", output)):
                line = await proc.stdout.readline()
                assert line, f"siyu demo exited early:\n{output}"
                output += line.decode()
        assert "✓ faq.csv" in output
        assert "Try asking" in output
        url = match.group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "healthz") as resp:
                assert resp.status == 200
            async with http.ws_connect(url + "ws") as ws:
                await ws.send_json({"type": "hello", "member_id": "m1", "name": "测试"})
                await ws.send_json({"type": "message", "text": "HD-1105 多少钱？"})
                async with asyncio.timeout(30):
                    while True:
                        frame = await ws.receive_json()
                        if frame.get("from") == "bot" and frame.get("kind") == "answer":
                            break
        assert "88" in frame["text"]
    finally:
        proc.terminate()
        await proc.wait()
