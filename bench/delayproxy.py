"""A TCP proxy on loopback that delays every request by a fixed time, to measure tools
against a store further away than the one on this machine.

Each piece of data sent towards the store waits ``delay`` seconds before it is passed
on (answers come back at once), so a request that fits in one piece (a GET, a LIST, a
small PUT) takes ``delay`` longer, as over a link with that round trip. Connections are
relayed independently, so requests in parallel wait in parallel. Used by
``python -m bench.fsspec_bench --delay-ms N``; runs on its own thread until the process
ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

PIECE = 1 << 16


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while data := await reader.read(PIECE):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


def start(host: str, port: int, delay: float) -> int:
    """Start a proxy to ``host:port`` that delays requests by ``delay`` seconds; return
    the loopback port it listens on."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    listening: list[int] = []

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_relay(client_r, up_w, delay), _relay(up_r, client_w, 0.0))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        listening.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await server.serve_forever()

    threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="bench-delay-proxy", daemon=True
    ).start()
    if not ready.wait(10):
        raise RuntimeError("the delay proxy did not start")
    return listening[0]
