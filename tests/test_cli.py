"""The ``siyu`` command line, run as a member of staff would: in-process for the quick commands,
and ``siyu demo`` as a real subprocess serving the web chat on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from adapters.wecom.crypto import CallbackCrypto, plain_signature
from bot.cli import cli
from tests.adapters.wecom.wire import now_timestamp
from tests.fakes.wecom_server import FakePlatform, wecom_server
from tests.knowledge.filemakers import write_xlsx

__all__ = ["wecom_server"]

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


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_ingest_docs_and_ask(env: dict[str, str], tmp_path: Path) -> None:
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    out = run("ingest", str(faq), "--tags", "会员")
    assert "✓ faq.csv: 1 entry, v1, 1 embedded, 0 reused" in out
    again = run("ingest", str(faq), "--tags", "会员")
    assert "✓ faq.csv: 1 entry, unchanged" in again
    assert "0/?" not in out + again
    assert "chunks" not in out + again
    assert "faq.csv" in run("docs")
    answer = run("ask", "积分怎么用")
    assert "积分满100分可抵扣1元。" in answer
    assert "found=True" in answer


def test_ingest_reports_a_broken_file_and_goes_on(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"not a zip at all")
    good = tmp_path / "faq.csv"
    good.write_text(FAQ_CSV, encoding="utf-8")
    out = run("ingest", str(broken), str(good), code=1)  # anything refused: non-zero
    assert "✗ broken.docx" in out
    assert "✓ faq.csv" in out
    assert "1 of 2 files refused" in out


def test_ingest_rejects_a_bad_date(env: dict[str, str], tmp_path: Path) -> None:
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    result = CliRunner().invoke(cli, ["ingest", str(faq), "--valid-to", "next tuesday"])
    assert result.exit_code != 0


def lines_of(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_ingest_warns_under_each_file_and_exits_0(env: dict[str, str], tmp_path: Path) -> None:
    messy = tmp_path / "faq.csv"
    messy.write_bytes(
        "问题,答案,负责人\n积分怎么用,积分可抵现,张三\n退货政策,,李四\n".encode("gbk")
    )
    clean = tmp_path / "more.csv"
    clean.write_text("问题,答案\n营业时间,十点开门\n", encoding="utf-8")
    lines = lines_of(run("ingest", str(messy), str(clean)))
    assert lines[0] == "✓ faq.csv: 1 entry, v1, 1 embedded, 0 reused"
    assert lines[1].startswith("⚠ faq.csv header, column 3 '负责人': not used by a QA table")
    assert lines[2] == "⚠ faq.csv: 1 row skipped (no answer: row 3)"
    assert lines[3].startswith("✓ more.csv: 1 entry, v1")
    assert lines[4] == "2 files loaded, 2 warnings"
    out = run("ingest", "--strict", str(messy), code=1)
    assert "✗ faq.csv: refused under --strict (2 warnings):" in out
    assert "1 of 1 files refused" in out


def test_ingest_refuses_metadata_columns_and_unknown_stores(
    env: dict[str, str], tmp_path: Path
) -> None:
    dated = tmp_path / "faq.xlsx"
    write_xlsx(dated, {"FAQ": [["问题", "答案", "有效期"], ["q", "a", "2026-12-01 至 2026-12-08"]]})
    stores = tmp_path / "stores.csv"
    stores.write_text("门店编号,门店名称,地址\nS1,南山店,深圳南山\n", encoding="utf-8")
    promo = tmp_path / "promo.csv"
    promo.write_text("活动名称,开始日期,适用门店\n双十二,2026-12-01,北京店\n", encoding="utf-8")
    out = run("ingest", str(dated), str(promo), str(stores), code=1)
    assert "✗ faq.xlsx header, column 3 '有效期': looks like a date" in out
    assert "✗ promo.csv row 2, column 适用门店: unknown store '北京店'" in out
    assert "2 of 3 files refused" in out
    assert "北京店" not in run("docs")  # refused: nothing of it loaded, no new store either


def test_ingest_without_a_store_directory_keeps_ids_with_a_warning(
    env: dict[str, str], tmp_path: Path
) -> None:
    promo = tmp_path / "promo.csv"
    promo.write_text("活动名称,开始日期,适用门店\n双十二,2026-12-01,sz-nanshan\n", encoding="utf-8")
    out = run("ingest", str(promo))
    assert "no store directory is loaded, so these stores are kept as store ids unchecked: " in out
    assert "'sz-nanshan' (ingest the store file first" in out
    run("ingest", "--strict", str(promo), code=1)


def test_a_copy_under_another_name_is_named(env: dict[str, str], tmp_path: Path) -> None:
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    copy = tmp_path / "faq (1).csv"
    copy.write_text(FAQ_CSV, encoding="utf-8")
    run("ingest", str(faq))
    strict = run("ingest", "--strict", str(copy), code=1)
    assert "1 of its 1 entry is already in 'faq.csv'" in strict
    out = run("ingest", str(copy))
    assert "⚠ faq (1).csv: 1 of its 1 entry is already in 'faq.csv'" in out


PROMOTIONS = (
    "活动名称,活动内容,开始日期,结束日期,适用门店\n"
    "冬日鲜享周,全场生鲜满88减15。,2026-12-03,2026-12-12,全部门店\n"
    "包邮周,线上订单满150元免运费。,2026-11-30,2026-12-15,S1、S2\n"
    "车厘子特价,车厘子限时特价129元。,2026-12-02,2026-12-08,S3\n"
)


def test_docs_lists_true_summaries_shows_entries_and_disables(
    env: dict[str, str], tmp_path: Path
) -> None:
    stores = tmp_path / "stores.csv"
    stores.write_text(
        "门店编号,门店名称,地址\nS1,南山店,深圳南山\nS2,福田店,深圳福田\nS3,天河店,广州天河\n",
        encoding="utf-8",
    )
    promos = tmp_path / "promotions.csv"
    promos.write_text(PROMOTIONS, encoding="utf-8")
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    run("ingest", str(stores), str(promos), str(faq))
    listing = run("docs")
    row = next(line for line in listing.splitlines() if "promotions.csv" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[:3] == ["promotions.csv", "enabled", "promotion×3"]
    assert cells[3] == "per entry (3 stores, some all)"
    assert "per entry: 2026-11-30 → 2026-12-15" in " ".join(cells)
    assert "store×3" in listing
    assert "faq×1" in listing

    shown = run("docs", "show", "promotions.csv")
    assert "promotions.csv: v1, 3 entries, enabled" in shown
    assert "S1, S2" in shown
    assert "2026-12-02 → 2026-12-08" in shown
    assert "车厘子限时特价" in shown

    assert "found=True" in run("ask", "积分怎么用")
    assert "✓ disabled faq.csv" in run("docs", "disable", "faq.csv")
    assert "disabled" in next(x for x in run("docs").splitlines() if "faq.csv" in x)
    assert "found=False" in run("ask", "积分怎么用")
    run("docs", "enable", "faq.csv")
    assert "found=True" in run("ask", "积分怎么用")
    assert "✓ removed faq.csv" in run("docs", "rm", "faq.csv")
    assert "faq.csv" not in run("docs")
    for command in ("show", "rm", "disable", "enable"):
        assert lines_of(run("docs", command, "faq.csv", code=1)) == [
            "✗ no document 'faq.csv' (siyu docs lists them)"
        ]


def test_a_killed_disable_or_enable_leaves_one_state_or_the_other(
    env: dict[str, str], tmp_path: Path
) -> None:
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    run("ingest", str(faq))
    siyu = str(Path(sys.executable).with_name("siyu"))
    for delay, command in [(1.0, "disable"), (2.0, "enable"), (3.0, "disable"), (4.0, "enable")]:
        with contextlib.suppress(subprocess.TimeoutExpired):  # killed (SIGKILL) at the timeout
            subprocess.run(
                [siyu, "docs", command, "faq.csv"], cwd=tmp_path, env={**os.environ, **env},
                capture_output=True, timeout=delay, check=False,
            )  # fmt: skip
        row = next(line for line in run("docs").splitlines() if "faq.csv" in line)
        enabled = "enabled" in row
        assert ("found=True" in run("ask", "积分怎么用")) is enabled, (delay, command, row)
    run("docs", "enable", "faq.csv")
    assert "found=True" in run("ask", "积分怎么用")


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


class Served:
    """A ``siyu`` subprocess serving on a free port; ``output`` is what it printed up to the URL."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, output: str) -> None:
        self.proc, self.url, self.output = proc, url, output


@asynccontextmanager
async def serving(*args: str, env: dict[str, str], cwd: Path) -> AsyncIterator[Served]:
    siyu = Path(sys.executable).with_name("siyu")
    environ = {**os.environ, **env, "SIYU_WEB_PORT": "0"}
    proc = await asyncio.create_subprocess_exec(
        str(siyu), *args, cwd=cwd, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(120):
            while "Ctrl-C stops." not in output:
                line = await proc.stdout.readline()
                assert line, f"siyu {args[0]} exited early:\n{output}"
                output += line.decode()
        match = re.search(r"web chat: (http://127\.0\.0\.1:\d+/)", output)
        assert match, output
        yield Served(proc, match.group(1), output)
    finally:
        proc.terminate()
        await proc.wait()


async def test_demo_loads_the_brand_and_serves_the_web_chat(
    env: dict[str, str], tmp_path: Path
) -> None:
    async with serving("demo", env=env, cwd=tmp_path) as served:
        assert "✓ faq.csv" in served.output
        assert "Try asking" in served.output
        url = served.url
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


# The official WeCom test vector's account (DESIGN.md §3); its URL check is signed now, since the
# channels refuse a timestamp more than 5 minutes old (the vector's own is from 2014).
CORP, TOKEN, AES_KEY = "wx5823bf96d3bd56c7", "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def url_check(plaintext: str) -> dict[str, str]:
    """A WeCom URL check of the vector's account, signed now, whose answer is ``plaintext``."""
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP)
    query = {"timestamp": now_timestamp(), "nonce": "263014780"}
    query["echostr"] = crypto.encrypt(plaintext)
    query["msg_signature"] = crypto.signature(query["timestamp"], query["nonce"], query["echostr"])
    return query


async def test_serve_mounts_every_configured_channel(env: dict[str, str], tmp_path: Path) -> None:
    wecom = {"corp_id": CORP, "token": TOKEN, "encoding_aes_key": AES_KEY, "secret": "s"}
    channels = {
        "SIYU_WECOM_KF": json.dumps([{"name": "kf1", **wecom}]),
        "SIYU_WECOM_APPS": json.dumps([{"name": "staff", "agent_id": 1000002, **wecom}]),
        "SIYU_OFFICIAL_ACCOUNTS": json.dumps(
            [{"name": "oa1", "app_id": "wxapp", "secret": "s", "token": TOKEN, "mode": "plain"}]
        ),
        "SIYU_WEBHOOKS": json.dumps([{"name": "bridge", "secret": "x" * 16}]),
    }
    async with serving("serve", env={**env, **channels}, cwd=tmp_path) as served:
        url = served.url
        for path in ("hooks/bridge", "wecom/kf/kf1", "wecom/app/staff", "wechat/oa/oa1"):
            assert url + path in served.output
        oa_query = {"timestamp": now_timestamp(), "nonce": "263014780", "echostr": "hello-oa"}
        oa_query["signature"] = plain_signature(TOKEN, oa_query["timestamp"], oa_query["nonce"])
        async with aiohttp.ClientSession() as http:
            for path in ("wecom/kf/kf1", "wecom/app/staff"):
                async with http.get(url + path, params=url_check("1616140317555161061")) as resp:
                    assert (resp.status, await resp.text()) == (200, "1616140317555161061")
            async with http.get(url + "wechat/oa/oa1", params=oa_query) as resp:
                assert (resp.status, await resp.text()) == (200, "hello-oa")
            async with http.post(url + "hooks/bridge", json={"id": "1"}) as resp:
                assert resp.status == 401  # unsigned


async def test_robot_send_posts_into_the_group(
    env: dict[str, str], tmp_path: Path, wecom_server: FakePlatform
) -> None:
    robots = json.dumps([{"name": "xuhui", "key": "robot-key-1", "store_id": "sh-xuhui"}])
    environ = {
        **os.environ, **env, "SIYU_WECOM_ROBOTS": robots, "SIYU_WECOM_API_BASE": wecom_server.url,
    }  # fmt: skip
    siyu = str(Path(sys.executable).with_name("siyu"))

    async def siyu_run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            siyu, *args, cwd=tmp_path, env=environ,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, out = await siyu_run("robot-send", "xuhui", "今日特价：鲜奶 9.9 元")
    assert code == 0, out
    [(_, sent)] = wecom_server.robot_sent
    assert sent["key"] == "robot-key-1"
    assert sent["text"]["content"] == "今日特价：鲜奶 9.9 元"
    code, out = await siyu_run("robot-send", "nobody", "hi")
    assert code != 0
    assert "no robot named 'nobody'" in out


@pytest.mark.parametrize(("llm_model", "expected"), [("", 4), ("fake-chat", 16)])
async def test_every_channel_answers_within_one_admission_per_process(
    data_dir: Path, llm_model: str, expected: int
) -> None:
    from adapters.admission import MAX_ANSWERING, MAX_ANSWERING_CPU
    from adapters.wecom.app_channel import APP_CHANNEL
    from adapters.wecom.config import WeComSettings
    from adapters.wecom.kf import KF_RUNTIME
    from adapters.wecom.official import OA_CHANNEL
    from bot.app import App
    from bot.cli import _admission, _channel_apps
    from bot.settings import Settings

    wecom = {"corp_id": CORP, "token": TOKEN, "encoding_aes_key": AES_KEY, "secret": "s"}
    channels = WeComSettings.model_validate({
        "kf": [{"name": "kf1", **wecom}],
        "apps": [{"name": "staff", "agent_id": 1000002, **wecom}],
        "official_accounts": [{"name": "oa1", "app_id": "wxapp", **wecom}],
    })  # fmt: skip
    settings = Settings(
        _env_file=None, data_dir=data_dir, knowledge={"embedding": "hash"}, wecom=channels,
        llm={"model": llm_model, "base_url": "http://127.0.0.1:9/v1"},
        web={"answer_queue": 3, "answer_wait_seconds": 2.5},
    )  # fmt: skip
    app = await App.build(settings)
    try:
        admission = _admission(settings)
        assert (admission.limit, admission.queue, admission.wait) == (expected, 3, 2.5)
        apps = dict(_channel_apps(app, admission))
        assert apps["/wecom/kf/"][KF_RUNTIME].tasks.admission is admission
        assert apps["/wecom/app/"][APP_CHANNEL].tasks.admission is admission
        assert apps["/wechat/oa/"][OA_CHANNEL].tasks.admission is admission
        assert expected == (MAX_ANSWERING if llm_model else MAX_ANSWERING_CPU)
    finally:
        await app.close()
