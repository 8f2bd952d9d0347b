"""Loopback proxies that add a fixed delay to every DNS answer and every SMTP reply, as on a real WAN.

A UDP proxy delays each answer datagram; a TCP proxy forwards client bytes at once and delivers each chunk
the server sends ``delay`` seconds late (in order), so every SMTP round trip — TLS handshakes included —
costs ``delay`` more. Both listen on 127.0.0.1 only and run on their own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, cast


class _UdpRelay(asyncio.DatagramProtocol):
    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._forward(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _forward(self, data: bytes, client: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        class Once(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, addr: tuple[str, int]) -> None:
                if not answer.done():
                    answer.set_result(reply)

        transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=self.upstream)
        try:
            transport.sendto(data)
            reply = await asyncio.wait_for(answer, 10)
        except TimeoutError:
            return
        finally:
            transport.close()
        await asyncio.sleep(self.delay)
        if self.transport is not None:
            self.transport.sendto(reply, client)


async def _pipe_delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Server → client: each chunk is written ``delay`` after it arrived, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, chunk))
    finally:
        queue.put_nowait((0.0, b""))
        await sender
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


class DelayProxies:
    """Start with ``start()``: gives the local ports; ``stop()`` ends the thread."""

    def __init__(self, dns: tuple[str, int], smtp: tuple[str, int], delay: float) -> None:
        self.dns, self.smtp, self.delay = dns, smtp, delay
        self.dns_port = self.smtp_port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._closers: list[Callable[[], Any]] = []

    def start(self) -> DelayProxies:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(10)
        return self

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpRelay(self.dns, self.delay), local_addr=("127.0.0.1", 0)
        )
        self.dns_port = udp.get_extra_info("sockname")[1]

        async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            server_reader, server_writer = await asyncio.open_connection(*self.smtp)
            await asyncio.gather(
                _pipe(client_reader, server_writer),
                _pipe_delayed(server_reader, client_writer, self.delay),
                return_exceptions=True,
            )

        tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.smtp_port = tcp.sockets[0].getsockname()[1]
        self._closers += [udp.close, tcp.close]

    def stop(self) -> None:
        for close in self._closers:
            self._loop.call_soon_threadsafe(close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
