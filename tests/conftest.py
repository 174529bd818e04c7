"""Fixtures shared by every test: the network guard and a temporary data directory.

The guard fails any outbound connection that is not to the loopback interface (or a Unix socket),
so a test can never reach the internet or a model hub by accident.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.logs import QUIET_BELOW_DEBUG, StderrHandler

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkBlocked(RuntimeError):
    """A test tried to open a connection to somewhere other than 127.0.0.1."""


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise NetworkBlocked(f"outbound connection to {address!r} blocked in tests")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real public evaluation text); the test skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Each test starts with the logging it found: a command run in-process that configures
    logging (``serve``, ``demo``, ``worker``: :func:`bot.logs.configure_logging`) would otherwise
    leave its INFO handler on the root logger, and a later test's command output would hold log
    lines. Only Siyu's own handler is taken off (pytest's capture handlers come and go by
    themselves, per phase)."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_BELOW_DEBUG}
    yield
    for handler in root.handlers[:]:
        if isinstance(handler, StderrHandler) and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)


@pytest.fixture(autouse=True)
def _heap_unfrozen() -> Iterator[None]:
    """A command run in-process that serves (``serve``, ``worker``) freezes the heap
    (:meth:`bot.app.App.settle`); left frozen, whatever it held is never collected again in this
    pytest process, and a leak from any earlier test surfaces only where a later test unfreezes
    (``tests/bot/test_app.py``). Each test ends with the heap as collectable as it found it."""
    yield
    gc.unfreeze()
