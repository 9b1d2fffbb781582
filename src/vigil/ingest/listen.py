"""Live syslog listeners: UDP, TCP and TLS (RFC 6587 framing), delivering batches to a sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from vigil.errors import InputError

Transport = Literal["udp", "tcp", "tls"]

MAX_MESSAGE = 64 * 1024
BATCH_SIZE = 1000
LINGER = 0.05
QUEUE_SIZE = 8192
# Asked of the kernel for the UDP socket: a burst waits there while the loop is busy. Linux caps
# it at net.core.rmem_max without saying so.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
READ_SIZE = 64 * 1024
# RFC 6587 MSG-LEN is NONZERO-DIGIT *DIGIT; ten digits is already more than any sane frame.
MAX_COUNT_DIGITS = 10
SSL_SHUTDOWN_TIMEOUT = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """One syslog message as it came off the wire, framing removed."""

    data: bytes
    peer: str  # "ip:port", "[ipv6]:port" for IPv6
    transport: Transport
    received: float  # time.time() when read


Sink = Callable[[list[Received]], Awaitable[None]]

COUNTERS = (
    "received_tcp",  # TLS included
    "received_udp",
    "udp_dropped",  # the queue was full: dropped by us
    "udp_kernel_dropped",  # the socket buffer was full: dropped by the kernel (Linux only)
    "oversize",  # messages cut to max_message (still delivered)
    "framing_errors",  # malformed octet counts and cut-off frames; the connection is closed
    "connections",
    "tcp_backpressure",  # times a TCP reader stopped reading because the queue was full
    "batches",
    "sink_errors",  # batches the sink raised on (lost)
    "lost_at_stop",  # still queued when stop() ran out of time
)


class _FramingError(Exception):
    pass


class _Framing:
    """Splits one TCP byte stream into messages (RFC 6587). The mode is chosen by the first
    byte of the connection: a digit means octet counting, anything else newline framing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.octets: bool | None = None
        self.skip = 0  # octet counting: bytes of an oversize frame still to throw away
        self.discarding = False  # newline framing: inside an oversize message
        self.oversize = 0

    def feed(self, chunk: bytes) -> tuple[list[bytes], str | None]:
        """The messages completed by `chunk`, and what is wrong with the stream if anything."""
        if self.octets is None:
            self.octets = chunk[:1].isdigit()
        self.buf += chunk
        try:
            out = self._octet_counted() if self.octets else self._newline_framed()
        except _FramingError as exc:
            return exc.args[0], exc.args[1]
        return out, None

    def finish(self) -> tuple[list[bytes], str | None]:
        """What the end of the stream completes: newline framing ends the last message there."""
        buf, self.buf = self.buf, bytearray()
        if self.octets:
            if buf or self.skip:
                return [], "connection closed inside an octet-counted frame"
            return [], None
        if self.discarding or not buf:
            return [], None
        msg = bytes(buf.rstrip(b"\r"))
        return ([msg] if msg else []), None

    def _octet_counted(self) -> list[bytes]:
        buf, limit = self.buf, self.limit
        out: list[bytes] = []
        pos, end = 0, len(self.buf)
        while pos < end:
            if self.skip:
                n = min(self.skip, end - pos)
                self.skip -= n
                pos += n
                continue
            space = buf.find(b" ", pos, pos + MAX_COUNT_DIGITS + 1)
            if space < 0:
                head = bytes(buf[pos : pos + MAX_COUNT_DIGITS + 1])
                if len(head) > MAX_COUNT_DIGITS or not head.isdigit() or head[:1] == b"0":
                    del buf[:pos]
                    raise _FramingError(out, f"malformed octet count {_show(head)}")
                break
            digits = bytes(buf[pos:space])
            if not digits.isdigit() or digits[:1] == b"0":
                del buf[:pos]
                raise _FramingError(out, f"malformed octet count {_show(digits)}")
            size = int(digits)
            take = min(size, limit)
            if end - space - 1 < take:
                break
            out.append(bytes(buf[space + 1 : space + 1 + take]))
            pos = space + 1 + take
            if size > limit:
                self.oversize += 1
                self.skip = size - limit
        del buf[:pos]
        return out

    def _newline_framed(self) -> list[bytes]:
        buf, limit = self.buf, self.limit
        out: list[bytes] = []
        pos, end = 0, len(self.buf)
        # Where the next LF and NUL are, found once per buffer rather than once per message.
        lf = nul = -2
        while pos < end:
            if lf != -1 and lf < pos:
                lf = buf.find(b"\n", pos)
            if nul != -1 and nul < pos:
                nul = buf.find(b"\0", pos)
            stop = lf if nul < 0 else nul if lf < 0 else min(lf, nul)
            if stop < 0:
                if self.discarding:
                    pos = end
                elif end - pos > limit:
                    out.append(bytes(buf[pos : pos + limit]))
                    self.oversize += 1
                    self.discarding = True
                    pos = end
                break
            if self.discarding:
                self.discarding = False
            else:
                msg_end = stop - 1 if stop > pos and buf[stop - 1] == 0x0D else stop
                if msg_end - pos > limit:
                    out.append(bytes(buf[pos : pos + limit]))
                    self.oversize += 1
                elif msg_end > pos:  # an empty line (a lone CR LF) is not a message
                    out.append(bytes(buf[pos:msg_end]))
            pos = stop + 1
        del buf[:pos]
        return out


def _show(raw: bytes) -> str:
    # Names the bad count in a log line without echoing message content.
    return repr(raw[: MAX_COUNT_DIGITS + 1])


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def _strip_trailer(data: bytes) -> bytes:
    # Many senders end a datagram as they would a TCP line.
    if data.endswith((b"\n", b"\0")):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    return data


def _kernel_drops(sock: socket.socket) -> int | None:
    """What the kernel dropped for this UDP socket (Linux `/proc/net/udp*` `drops`)."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as rows:
                for row in rows:
                    fields = row.split()
                    if len(fields) >= 13 and fields[9] == inode:
                        return int(fields[12])
        except (OSError, ValueError):
            continue
    return None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server._offer_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for datagrams we never sent a reply to: nothing to act on


class SyslogServer:
    """Receives syslog over UDP and TCP (or TLS) and hands it to `sink` in batches.

        async def sink(batch: list[Received]) -> None: ...

        async with SyslogServer(sink, host="0.0.0.0", udp_port=514, tcp_port=514) as server:
            await stop_requested.wait()
        print(server.counters)

    A port of 0 picks a free one (read it back from `udp_port` / `tcp_port`), None disables
    that transport. With `tls` the TCP listener speaks TLS. Between the sockets and the sink
    is one queue of `queue_size` messages: a TCP reader waits when it is full (the sender is
    slowed by TCP itself, nothing is lost), a UDP datagram is dropped and counted. The sink is
    called with up to `batch_size` messages, or fewer once the first of them has waited
    `linger` seconds; one call at a time, in arrival order. A sink that raises loses that
    batch (counted in `sink_errors`). At worst the queue holds `queue_size * max_message`
    bytes.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        host: str = "127.0.0.1",
        udp_port: int | None = 0,
        tcp_port: int | None = 0,
        tls: ssl.SSLContext | None = None,
        max_message: int = MAX_MESSAGE,
        batch_size: int = BATCH_SIZE,
        linger: float = LINGER,
        queue_size: int = QUEUE_SIZE,
        udp_receive_buffer: int = UDP_RECEIVE_BUFFER,
    ) -> None:
        if udp_port is None and tcp_port is None:
            raise InputError("syslog listener: neither a UDP nor a TCP port to listen on")
        if max_message < 1 or batch_size < 1 or queue_size < 1 or linger < 0:
            raise InputError(
                "syslog listener: max_message, batch_size and queue_size must be positive, "
                "linger not negative"
            )
        self._sink = sink
        self.host = host
        self._udp_request = udp_port
        self._tcp_request = tcp_port
        self._tls = tls
        self.max_message = max_message
        self.batch_size = batch_size
        self.linger = linger
        self.queue_size = queue_size
        self.udp_receive_buffer = udp_receive_buffer
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._queue: asyncio.Queue[Received | None] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_sock: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._closing = False

    @property
    def udp_port(self) -> int | None:
        """The UDP port bound, once started."""
        return self._udp_sock.getsockname()[1] if self._udp_sock is not None else None

    @property
    def tcp_port(self) -> int | None:
        """The TCP (or TLS) port bound, once started."""
        if self._tcp is None or not self._tcp.sockets:
            return None
        port: int = self._tcp.sockets[0].getsockname()[1]
        return port

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (see `COUNTERS`)."""
        snapshot = dict(self._counters)
        if self._udp is not None and self._udp_sock is not None:
            snapshot["udp_kernel_dropped"] = _kernel_drops(self._udp_sock) or 0
        return snapshot

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the sockets and start receiving. Binding failures are `InputError`s."""
        if self._delivery is not None:
            raise RuntimeError("SyslogServer already started")
        loop = asyncio.get_running_loop()
        self._closing = False
        self._queue = asyncio.Queue(self.queue_size)
        try:
            if self._udp_request is not None:
                sock = self._bind(socket.SOCK_DGRAM, self._udp_request)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.udp_receive_buffer)
                self._udp_sock = sock
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), sock=sock
                )
            if self._tcp_request is not None:
                sock = self._bind(socket.SOCK_STREAM, self._tcp_request)
                self._tcp = await asyncio.start_server(
                    self._serve_connection,
                    sock=sock,
                    ssl=self._tls,
                    limit=READ_SIZE,
                    # A peer that never answers our close_notify must not hold a reader.
                    ssl_shutdown_timeout=SSL_SHUTDOWN_TIMEOUT if self._tls is not None else None,
                )
        except BaseException:
            await self._close_sockets()
            self._queue = None
            raise
        self._delivery = asyncio.create_task(self._deliver(), name="syslog-delivery")

    def _bind(self, kind: socket.SocketKind, port: int) -> socket.socket:
        proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        try:
            family, _, _, _, address = socket.getaddrinfo(self.host, port, type=kind)[0]
            sock = socket.socket(family, kind)
        except OSError as exc:
            raise InputError(f"cannot listen on {proto} {self.host}:{port}: {exc}") from exc
        try:
            if kind == socket.SOCK_STREAM:
                # A restarted listener gets its port back while old connections linger.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            if kind == socket.SOCK_STREAM:
                sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise InputError(f"cannot listen on {proto} {self.host}:{port}: {exc}") from exc
        return sock

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop listening and hand everything already received to the sink, waiting at most
        `timeout` seconds for it; what is still queued after that is counted in
        `lost_at_stop`."""
        if self._delivery is None or self._queue is None:
            return
        self._closing = True
        queue, delivery = self._queue, self._delivery
        try:
            async with asyncio.timeout(timeout):
                await self._close_sockets()
                readers = list(self._connections)
                if readers:
                    await asyncio.gather(*readers, return_exceptions=True)
                await queue.put(None)
                await delivery
        except TimeoutError:
            for task in [*self._connections, delivery]:
                task.cancel()
            await asyncio.gather(*self._connections, delivery, return_exceptions=True)
            lost = sum(1 for item in _drain(queue) if item is not None)
            self._counters["lost_at_stop"] += lost
            log.warning("syslog listener stopped with %d messages not delivered", lost)
        finally:
            self._delivery = None
            self._queue = None

    async def _close_sockets(self) -> None:
        if self._udp_sock is not None:
            # Read before closing: the kernel forgets the socket's drops with it.
            self._counters["udp_kernel_dropped"] = _kernel_drops(self._udp_sock) or 0
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        elif self._udp_sock is not None:
            self._udp_sock.close()
        self._udp_sock = None
        if self._tcp is not None:
            self._tcp.close()
            tcp, self._tcp = self._tcp, None
            # Readers go on with what their buffers already hold, then see the end of the
            # stream. abort(), not close(): a TLS close waits for the peer's close_notify.
            # (Closing them first also matters on 3.12+, where wait_closed waits for them.)
            for writer in self._connections.values():
                writer.transport.abort()
            await tcp.wait_closed()

    def _offer_datagram(self, data: bytes, addr: Any) -> None:
        queue = self._queue
        if queue is None or self._closing:
            return
        data = _strip_trailer(data)
        if not data:
            return
        if len(data) > self.max_message:
            data = data[: self.max_message]
            self._counters["oversize"] += 1
        try:
            queue.put_nowait(Received(data, _peer(addr), "udp", time.time()))
        except asyncio.QueueFull:
            self._counters["udp_dropped"] += 1
        else:
            self._counters["received_udp"] += 1

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        queue = self._queue
        task = asyncio.current_task()
        if queue is None or task is None or self._closing:
            writer.close()
            return
        self._connections[task] = writer
        counters = self._counters
        counters["connections"] += 1
        transport: Transport = "tls" if self._tls is not None else "tcp"
        peer = _peer(writer.get_extra_info("peername"))
        framing = _Framing(self.max_message)
        try:
            while True:
                chunk = await reader.read(READ_SIZE)
                messages, error = framing.feed(chunk) if chunk else framing.finish()
                now = time.time()
                for data in messages:
                    if queue.full():
                        counters["tcp_backpressure"] += 1
                    # Waiting here leaves the socket unread: the kernel window closes and the
                    # sender slows down.
                    await queue.put(Received(data, peer, transport, now))
                    counters["received_tcp"] += 1
                if framing.oversize:
                    counters["oversize"] += framing.oversize
                    framing.oversize = 0
                if error is not None:
                    counters["framing_errors"] += 1
                    log.warning("syslog %s from %s: %s; connection closed", transport, peer, error)
                    break
                if not chunk:
                    break
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("syslog %s connection from %s ended: %s", transport, peer, type(exc).__name__)
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()

    async def _deliver(self) -> None:
        queue = self._queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        size, linger = self.batch_size, self.linger
        finished = False
        while not finished:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            deadline = loop.time() + linger
            while len(batch) < size:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            item = await queue.get()
                    except TimeoutError:
                        break
                if item is None:
                    finished = True
                    break
                batch.append(item)
            self._counters["batches"] += 1
            try:
                await self._sink(batch)
            except Exception as exc:
                self._counters["sink_errors"] += 1
                # The exception's text may quote the messages: name its type only.
                log.error("syslog sink failed on a batch of %d: %s", len(batch), type(exc).__name__)


def _drain(queue: asyncio.Queue[Received | None]) -> list[Received | None]:
    items: list[Received | None] = []
    while True:
        try:
            items.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            return items


__all__ = ["COUNTERS", "Received", "Sink", "SyslogServer", "Transport"]
