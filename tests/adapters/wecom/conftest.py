"""Fixtures of the WeChat / WeCom adapter tests: the fake platform API on 127.0.0.1."""

from __future__ import annotations

from tests.fakes.wecom_server import wecom_server

__all__ = ["wecom_server"]
