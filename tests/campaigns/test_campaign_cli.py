"""``siyu members`` and ``siyu campaign`` as an operator runs them: the real command line (in a
thread, with its own event loop, as ``tests/test_cli.py`` runs the quick commands), a real data
directory, and the fake WeCom platform on 127.0.0.1 receiving what the campaigns send."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from bot.cli import cli
from tests.fakes.wecom_server import FakePlatform, wecom_server

__all__ = ["wecom_server"]

ROOT = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def env(
    tmp_path: Path, wecom_server: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    fake = wecom_server
    monkeypatch.chdir(tmp_path)
    values = {
        "SIYU_DATA_DIR": str(tmp_path / "data"),
        "SIYU_EMBEDDING": "hash",
        "SIYU_LLM_MODEL": "",
        "SIYU_BRAND_NAME": "禾町生活",
        "SIYU_WECOM_API_BASE": fake.url,
        "SIYU_WECOM_CONTACT": json.dumps({"corp_id": fake.corp_id, "secret": fake.corp_secret}),
        "SIYU_WECOM_ROBOTS": json.dumps([{"name": "g1", "key": "robot-key-1"}]),
        "SIYU_CAMPAIGN_QUIET_HOURS": "00:00-00:00",  # none: the test runs at any hour
    }
    for key in [k for k in os.environ if k.startswith("SIYU_")]:
        monkeypatch.delenv(key)
    for key, value in {**values, "COLUMNS": "200"}.items():
        monkeypatch.setenv(key, value)
    return values


async def siyu(env: dict[str, str], cwd: Path, *args: str, ok: bool = True) -> str:
    """Run ``siyu *args`` in a thread (the fake platform keeps serving on this loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    text = result.output + (repr(result.exception) if result.exception else "")
    assert (result.exit_code == 0) == ok, text
    return text


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    today = datetime.now(TZ).date()
    promo = tmp_path / "promo.md"
    promo.write_text(
        "---\nkind: promotion\ntitle: 生鲜满199减30\n"
        f"valid_from: {today - timedelta(days=1)}\nvalid_to: {today + timedelta(days=30)}\n"
        "---\n全场生鲜单笔满199元减30元，每单限减一次。\n",
        encoding="utf-8",
    )
    long_ago = today - timedelta(days=45)
    members = tmp_path / "members.csv"
    members.write_text(
        "渠道,用户ID,姓名,门店,owner_userid,external_userid,groups,consent,最近活跃\n"
        f"contact,c1,王芳,s1,zhang,wmA,,是,{long_ago}\n"
        f"contact,c2,李雷,s1,zhang,wmB,,yes,{long_ago}\n"
        f"contact,c3,韩梅梅,s1,,,g1,1,{long_ago}\n"
        f"contact,c4,赵四,s1,li,wmD,,maybe,{long_ago}\n",
        encoding="utf-8",
    )
    return promo, members


async def test_an_operator_plans_runs_and_reports_campaigns(
    env: dict[str, str], tmp_path: Path, wecom_server: FakePlatform
) -> None:
    promo, members = write_inputs(tmp_path)
    assert "1 entry," in await siyu(env, tmp_path, "ingest", str(promo))
    out = await siyu(env, tmp_path, "members", "import", str(members))
    assert "3 created, 0 updated, 1 rejected" in out
    assert "line 5: consent 'maybe' is not yes/no" in out

    await siyu(env, tmp_path, "campaign", "create", "winback", "--kind", "reengage")
    await siyu(
        env, tmp_path, "campaign", "create", "deals", "--kind", "daily_deals", "--store", "s1",
        "--groups", "g1", "--cron", "0 9 * * *",
    )  # fmt: skip
    listed = await siyu(env, tmp_path, "campaign", "list")
    assert "winback" in listed
    assert "0 9 * * *" in listed

    preview = await siyu(env, tmp_path, "campaign", "preview", "winback")
    assert "messages planned: 3 {'staff_task': 2, 'group': 1}" in preview
    assert "'group_only': 1" in preview
    assert '回复"退订"不再接收' in preview
    assert wecom_server.templates_sent == []  # a preview sends nothing

    run = await siyu(env, tmp_path, "campaign", "run", "winback")
    assert "{'sent': 3}" in run  # two staff tasks' rows and a post to c3's group
    (task,) = wecom_server.templates_sent
    assert task["sender"] == "zhang"
    assert sorted(task["external_userid"]) == ["wmA", "wmB"]
    assert "全场生鲜单笔满199元减30元" in task["text"]["content"]

    assert len(wecom_server.robot_sent) == 1
    deals = await siyu(env, tmp_path, "campaign", "run", "deals")
    assert "{'sent': 1}" in deals
    assert len(wecom_server.robot_sent) == 2

    report = await siyu(env, tmp_path, "campaign", "report", "winback")
    assert "{'sent': 3}" in report
    assert "dormant" in report


async def test_operator_mistakes_get_clear_errors(env: dict[str, str], tmp_path: Path) -> None:
    out = await siyu(
        env, tmp_path, "campaign", "create", "x", "--kind", "reengage", "--cron", "99 * * *",
        ok=False,
    )  # fmt: skip
    assert "cron" in out
    out = await siyu(env, tmp_path, "campaign", "create", "x", "--kind", "flash", ok=False)
    assert "kind must be one of" in out
    assert "no campaign named 'nope'" in await siyu(
        env, tmp_path, "campaign", "preview", "nope", ok=False
    )
    junk = tmp_path / "members.xlsx"
    junk.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    out = await siyu(env, tmp_path, "members", "import", str(junk), ok=False)
    assert "CSV" in out


async def test_the_scheduler_fires_a_daily_deal_from_the_settings(
    env: dict[str, str], tmp_path: Path
) -> None:
    promo, _ = write_inputs(tmp_path)
    await siyu(env, tmp_path, "ingest", str(promo))
    fire_at = datetime.now(TZ) + timedelta(seconds=15)
    cron = f"{fire_at.second} {fire_at.minute} {fire_at.hour} * * *"  # seconds first
    deals = json.dumps([{"store_id": None, "cron": cron, "groups": ["g1"]}])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from bot.cli import main; main()", "scheduler",
        cwd=tmp_path, env={**os.environ, "SIYU_DAILY_DEALS": deals},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    db = tmp_path / "data" / "siyu.db"
    try:
        runs: list[tuple[str, str]] = []
        for _ in range(60):  # up to 30 s after the fire time
            await asyncio.sleep(1.0 if datetime.now(TZ) < fire_at else 0.5)
            if db.exists():
                runs = query(db, "SELECT run_key, state FROM campaign_run")
            if runs and runs[0][1] != "planning":  # the planning row commits first
                break
        assert runs == [(fire_at.date().isoformat(), "planned")]
        (fire,) = query(db, "SELECT job_id, outcome FROM scheduler_fire")
        assert fire[1].startswith("planned 1")  # the one group post
    finally:
        proc.kill()
        await proc.wait()


async def test_a_preview_writes_nothing_through_the_command_line(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promo, members = write_inputs(tmp_path)
    await siyu(env, tmp_path, "ingest", str(promo))
    await siyu(env, tmp_path, "members", "import", str(members))
    db = tmp_path / "data" / "siyu.db"
    with sqlite3.connect(db) as conn:  # c1 asked about 水果: an interest a plan would store
        conn.execute(
            "INSERT INTO message_log (session_key, member_id, role, text, citations, created_at)"
            " VALUES ('x', 1, 'user', '有水果吗', '[]', ?)",
            (datetime.now(TZ) - timedelta(days=40),),
        )
    monkeypatch.setenv("SIYU_DAILY_DEALS", json.dumps([{"store_id": "s1", "groups": ["g1"]}]))
    before = table_rows(db)
    deals = await siyu(env, tmp_path, "campaign", "preview", "daily-deals:s1")
    assert "messages planned: 1 {'group': 1}" in deals  # from the settings, stored or not
    assert table_rows(db) == before
    assert before["campaign"] == []
    assert "not yet" in await siyu(env, tmp_path, "campaign", "list")

    await siyu(env, tmp_path, "campaign", "create", "winback", "--kind", "reengage")
    before = table_rows(db)
    assert [row[1] for row in before["campaign"]] == ["daily-deals:s1", "winback"]
    winback = await siyu(env, tmp_path, "campaign", "preview", "winback")
    assert "messages planned: 3" in winback
    await siyu(env, tmp_path, "campaign", "preview", "daily-deals:s1")
    assert table_rows(db) == before
    assert "not yet" not in await siyu(env, tmp_path, "campaign", "list")


async def test_a_bad_daily_deals_cron_stops_the_commands_that_write(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_DAILY_DEALS", json.dumps([{"store_id": "s1", "cron": "0 25 * * *"}]))
    for command in (["campaign", "create", "w", "--kind", "reengage"], ["scheduler"]):
        out = await siyu(env, tmp_path, *command, ok=False)
        assert "cron '0 25 * * *' is not valid" in out
    assert table_rows(tmp_path / "data" / "siyu.db")["campaign"] == []


def table_rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table the models define, by table."""
    from sqlmodel import SQLModel

    with sqlite3.connect(db, timeout=5) as conn:
        return {
            t.name: sorted(conn.execute(f"SELECT * FROM {t.name}").fetchall(), key=repr)
            for t in SQLModel.metadata.sorted_tables
        }


def query(db: Path, sql: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db, timeout=5) as conn:
        return [tuple(r) for r in conn.execute(sql)]
