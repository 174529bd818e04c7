"""A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL), to cut it off and bring it back.

The database server is shared by every test run on the machine and must never be stopped; a
test that needs an outage points its processes at this proxy instead and cuts the proxy:

- :meth:`TcpProxy.cut` stops listening (a new connection is refused, as by a server that is
  down) and aborts every open connection on both sides (the client sees a reset; the server
  ends the session, releasing its session locks, as when PostgreSQL restarts);
- :meth:`TcpProxy.restore` listens again on the same port.

``bytes`` counts what went through (both directions), so a test can check the traffic really
passed here. Used as ``async with TcpProxy(port) as proxy``; everything is closed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from sqlalchemy.engine.url import make_url

CHUNK = 64 * 1024


class TcpProxy:
    """Forwards 127.0.0.1:``port`` (0: any free port) to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.bytes = 0
        self.connections = 0

    async def __aenter__(self) -> TcpProxy:
        await self._listen()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.cut()

    def url(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by this proxy's."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    async def cut(self) -> None:
        """Refuse new connections and reset every open one (module docstring)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        links = list(self._links)
        for link in links:
            link.cancel()
        await asyncio.gather(*links, return_exceptions=True)

    async def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._server is None:
            await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(client_w)
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, server_w = await asyncio.open_connection(*self._upstream)
            self._writers.add(server_w)
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(task)
            for writer in (client_w, server_w):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                self.bytes += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:  # a reset on either side ends this direction; the link aborts both
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()
