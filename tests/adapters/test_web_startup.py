"""Start-up mistakes a user can make end in one short line naming the setting, never a traceback.

Each case runs the real ``siyu`` console script in a subprocess (all started at once, so the
module costs one interpreter start-up, not seven).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic_settings import BaseSettings

from bot.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"
SIYU = str(Path(sys.executable).with_name("siyu"))
TIMEOUT_S = 120


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    env: dict[str, str]
    dotenv: str | bytes | None = None


@dataclass(frozen=True)
class Outcome:
    code: int
    output: str


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port another program is listening on (as a first ``make demo`` would be)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


EXPECTED = {
    "serve on a busy port": ("SIYU_WEB_PORT", "already in use"),
    "demo on a busy port": ("SIYU_WEB_PORT", "already in use"),
    "data dir under a file": ("SIYU_DATA_DIR", "not writable"),
    "bad JSON": ("SIYU_WEBHOOKS", "JSON"),
    "invalid values": ("SIYU_WEB_PORT", "SIYU_TIMEZONE", "Mars/Base"),
    "bad value in .env": ("SIYU_WEBHOOKS in .env", "JSON"),
    "lease shorter than an answer": ("SIYU_INBOX_LEASE_SECONDS", "SIYU_ANSWER_DEADLINE"),
    ".env saved as GBK": (".env line 2", "UTF-8"),
}
"""What each case's output must contain."""


def _cases(port: int, tmp: Path) -> dict[str, Case]:
    (tmp / "a-file").write_text("not a folder")
    busy = {"SIYU_WEB_PORT": str(port)}
    return {
        "serve on a busy port": Case(("serve",), busy),
        "demo on a busy port": Case(("demo",), busy),
        "data dir under a file": Case(("serve",), {"SIYU_DATA_DIR": str(tmp / "a-file" / "data")}),
        "bad JSON": Case(("serve",), {"SIYU_WEBHOOKS": "{bad"}),
        "invalid values": Case(("demo",), {"SIYU_WEB_PORT": "99999", "SIYU_TIMEZONE": "Mars/Base"}),
        "bad value in .env": Case(("serve",), {}, "SIYU_WEBHOOKS=[oops\n"),
        "lease shorter than an answer": Case(
            ("serve",), {"SIYU_ANSWER_DEADLINE": "60", "SIYU_INBOX_LEASE_SECONDS": "30"}
        ),
        ".env saved as GBK": Case(
            ("demo",), {}, "# brand\nSIYU_BRAND_NAME=禾町生活\n".encode("gbk")
        ),
    }


@pytest.fixture(scope="module")
def outcomes(
    busy_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Outcome]]:
    tmp = tmp_path_factory.mktemp("startup")
    running: dict[str, subprocess.Popen[str]] = {}
    for index, (name, case) in enumerate(_cases(busy_port, tmp).items()):
        cwd = tmp / f"case-{index}"
        cwd.mkdir()
        if isinstance(case.dotenv, bytes):
            (cwd / ".env").write_bytes(case.dotenv)
        elif case.dotenv is not None:
            (cwd / ".env").write_text(case.dotenv, encoding="utf-8")
        env = {**os.environ, "SIYU_DATA_DIR": str(cwd / "data"), "SIYU_EMBEDDING": "hash"}
        env = {k: v for k, v in (env | case.env).items() if k != "SIYU_WEB_HOST"}
        running[name] = subprocess.Popen(
            [SIYU, *case.args], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    results = {}
    try:
        for name, proc in running.items():
            out, _ = proc.communicate(timeout=TIMEOUT_S)
            results[name] = Outcome(proc.returncode, out)
        yield results
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("name", EXPECTED)
def test_start_up_mistake_is_one_clear_line(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert outcome.code == 2, outcome.output
    assert "Traceback" not in outcome.output
    assert len(outcome.output.strip().splitlines()) <= 4, outcome.output
    for needle in EXPECTED[name]:
        assert needle in outcome.output, outcome.output


def test_busy_port_message_names_the_address(outcomes: dict[str, Outcome], busy_port: int) -> None:
    for name in ("serve on a busy port", "demo on a busy port"):
        assert f"127.0.0.1:{busy_port}" in outcomes[name].output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_data_dir_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    try:
        env = {**os.environ, "SIYU_DATA_DIR": str(data), "SIYU_EMBEDDING": "hash"}
        done = subprocess.run(
            [SIYU, "serve"], cwd=tmp_path, env=env, text=True, timeout=TIMEOUT_S,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    finally:
        data.chmod(0o755)
    assert done.returncode == 2
    assert "SIYU_DATA_DIR" in done.stdout
    assert "Traceback" not in done.stdout


def test_env_example_copied_to_env_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty values (``SIYU_X=``) mean the default: ``cp .env.example .env`` starts."""
    for key in list(os.environ):
        if key.startswith("SIYU_"):
            monkeypatch.delenv(key)
    settings = Settings(_env_file=REPO / ".env.example")  # type: ignore[call-arg]
    assert settings.knowledge.min_confidence is None
    assert settings.web.port == 8080


def _variables(model: type[BaseSettings], prefix: str = "SIYU_") -> set[str]:
    """Every variable ``model`` reads: a section's fields by their alias, the top by name."""
    names = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            names |= _variables(kind)
        elif isinstance(field.validation_alias, str):
            names.add(field.validation_alias)
        else:
            names.add(prefix + name.upper())
    return names


def test_every_setting_is_in_env_example_and_read_by_its_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``.env.example`` documents exactly the variables the sections read, and each section reads
    its own (``SIYU_LLM_MODEL`` lands in ``settings.llm``, not at the top)."""
    documented = set(re.findall(r"^#? ?(SIYU_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    assert documented == _variables(Settings)
    for key in list(os.environ):
        if key.startswith("SIYU_"):
            monkeypatch.delenv(key)
    for key, value in {
        "SIYU_LLM_MODEL": "qwen-plus", "SIYU_LLM_TIMEOUT": "7", "SIYU_BRAND_NAME": "禾町生活",
        "SIYU_TIMEZONE": "Asia/Urumqi", "SIYU_RETRIEVAL_TOP_K": "9", "SIYU_EMBEDDING": "hash",
        "SIYU_KNOWLEDGE_REFRESH_SECONDS": "0",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.llm.model, settings.llm.timeout, settings.llm.enabled) == (
        "qwen-plus",
        7,
        True,
    )
    assert settings.bot.config().brand == "禾町生活"
    assert settings.bot.timezone == ZoneInfo("Asia/Urumqi")
    knowledge = settings.knowledge.config(settings.data_dir)
    assert (knowledge.retrieval.top_k, knowledge.embedding.backend) == (9, "hash")
    assert knowledge.refresh_seconds == 0
