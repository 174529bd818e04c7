"""A PostgreSQL outage under delivery: two ``siyu worker`` and one ``siyu scheduler`` processes
reach the database through a TCP proxy (:mod:`tests.fakes.tcp_proxy`) that the test cuts for
10 s in the middle of a 1,200-row delivery to the fake platform, then restores.

What it proves, each part with its own assertion:

- the processes stay alive through the outage (before this, the first error ended a worker);
- every row is ``sent`` and every member received exactly one message, with its row's ``msgid``
  (counted at the fake platform, which keeps one delivery per msgid: the kf route's retries of
  rows the outage left with an unknown outcome are harmless by design);
- each worker logged the outage once and its end once, not a line per attempt;
- the scheduler leader's advisory lock (observed in ``pg_locks`` over a direct connection) is
  gone while the proxy is cut (the session died with its connection) and held again after the
  restore: the leader noticed and was elected again;
- SIGTERM then stops all three with exit code 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.db import create_engine
from bot.schema import upgrade
from tests.campaigns.delivery_proc import CORP_ID, CORP_SECRET, KF_ACCOUNT
from tests.campaigns.test_crash_safety import expected_msgids, rows_by_state, seed_kf
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.wecom_server import FakePlatform, wecom_server
from tests.siyu_proc import SiyuProc

__all__ = ["wecom_server"]

pytestmark = pytest.mark.postgres

ROWS = 1200
CUT_S = 10.0
CUT_AFTER_SENT = 150
"""Cut once this many rows are sent: the outage lands in the middle of the delivery."""
FINISH_WITHIN_S = 300.0
RELEADER_WITHIN_S = 60.0
KF_PER_MINUTE = 3000
"""About 50 sends a second shared by the workers: the delivery lasts longer than the cut."""


def process_env(db_url: str, api: str, data_dir: Path) -> dict[str, str]:
    kf = [{
        "name": KF_ACCOUNT, "corp_id": CORP_ID, "secret": CORP_SECRET, "token": "kf-token",
        "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    }]  # fmt: skip
    return {
        "SIYU_DATABASE_URL": db_url, "SIYU_DATA_DIR": str(data_dir), "SIYU_EMBEDDING": "hash",
        "SIYU_LLM_MODEL": "", "SIYU_WECOM_KF": json.dumps(kf), "SIYU_WECOM_API_BASE": api,
        "SIYU_CAMPAIGN_QUIET_HOURS": "00:00-00:00",
        "SIYU_CAMPAIGN_KF_PER_MINUTE": str(KF_PER_MINUTE), "SIYU_LOG_LEVEL": "INFO",
    }  # fmt: skip


async def advisory_locks(engine: AsyncEngine) -> int:
    """Session advisory locks held in this database (only the scheduler leader takes one)."""
    query = sa.text(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def wait_for_locks(engine: AsyncEngine, wanted: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await advisory_locks(engine) == wanted:
            return True
        await asyncio.sleep(0.5)
    return False


async def wait_for_sent(engine: AsyncEngine, at_least: int, within: float) -> int:
    deadline = time.monotonic() + within
    sent = 0
    while time.monotonic() < deadline:
        sent = (await rows_by_state(engine))["sent"]
        if sent >= at_least:
            return sent
        await asyncio.sleep(0.2)
    return sent


async def test_workers_and_scheduler_wait_out_a_database_outage(
    wecom_server: FakePlatform, fresh_database: str, tmp_path: Path
) -> None:
    engine = create_engine(fresh_database)
    observer = create_async_engine(fresh_database, pool_size=1)
    procs: list[SiyuProc] = []
    upstream = make_url(fresh_database).port or 5432
    try:
        await upgrade(engine)
        await seed_kf(engine, wecom_server, ROWS)
        async with TcpProxy(upstream) as proxy:
            env = process_env(proxy.url(fresh_database), wecom_server.url, tmp_path)
            for name, command in (("w1", "worker"), ("w2", "worker"), ("s1", "scheduler")):
                penv = {**env, "SIYU_DATA_DIR": str(tmp_path / name / "data")}
                procs.append(await SiyuProc.start(name, command, env=penv, cwd=tmp_path / name))
            for proc in procs:
                await proc.wait_for("Ctrl-C stops")
            assert await wait_for_locks(observer, 1, RELEADER_WITHIN_S), "no scheduler leader"
            sent_before = await wait_for_sent(engine, CUT_AFTER_SENT, FINISH_WITHIN_S)
            assert CUT_AFTER_SENT <= sent_before < ROWS, f"{sent_before} sent before the cut"

            await proxy.cut()
            await asyncio.sleep(CUT_S)
            alive_during = [p.name for p in procs if p.alive]
            locks_during = await advisory_locks(observer)
            await proxy.restore()

            sent = await wait_for_sent(engine, ROWS, FINISH_WITHIN_S)
            releader = await wait_for_locks(observer, 1, RELEADER_WITHIN_S)
            alive_after = [p.name for p in procs if p.alive]
            codes = [await p.stop(signal.SIGTERM) for p in procs]
        logs = {p.name: p.stderr() for p in procs}
        assert alive_during == ["w1", "w2", "s1"], logs
        assert locks_during == 0, "the leader's session should have died with its connection"
        assert alive_after == ["w1", "w2", "s1"], logs
        assert sent == ROWS, f"{sent} of {ROWS} sent; {dict(await rows_by_state(engine))}"
        assert releader, f"no leader elected again after the outage: {logs['s1']}"
        assert codes == [0, 0, 0], logs
        for name in ("w1", "w2"):
            assert logs[name].count("the database is unavailable") == 1, logs[name]
            assert logs[name].count("the database is back") == 1, logs[name]
            assert "Traceback" not in logs[name], logs[name]
        assert logs["s1"].count("leads") >= 2, logs["s1"]  # before and after the outage
        assert (await rows_by_state(engine)) == Counter({"sent": ROWS})
        delivered = Counter(str(s["msgid"]) for s in wecom_server.kf_sent)
        assert len(delivered) == ROWS
        assert max(delivered.values()) == 1
        by_user = {str(s["touser"]): str(s["msgid"]) for s in wecom_server.kf_sent}
        assert by_user == await expected_msgids(engine)
        requests = wecom_server.count("/cgi-bin/kf/send_msg")
        print(f"{requests} send_msg requests for {ROWS} rows; {proxy.connections} connections")
    finally:
        for proc in procs:
            await proc.kill()
        await observer.dispose()
        await engine.dispose()
