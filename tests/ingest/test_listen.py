"""Syslog listeners over real sockets: RFC 6587 framing, batches, backpressure, TLS, limits."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import ssl
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from vigil.ingest.listen import Received, SyslogServer

WAIT = 20.0  # seconds any condition may take before the test fails


class Sink:
    """Keeps every batch; optionally slow, to make the queue fill up."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.items: list[Received] = []
        self.batches: list[int] = []

    async def __call__(self, batch: list[Received]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.items.extend(batch)
        self.batches.append(len(batch))

    def by_peer(self) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = defaultdict(list)
        for item in self.items:
            out[item.peer].append(item.data)
        return dict(out)


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


def octet_frame(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def message(tag: bytes, number: int) -> bytes:
    return b"<13>1 2026-11-28T12:00:00Z host app - - - %s %05d" % (tag, number)


async def send_tcp(
    port: int,
    payload: bytes,
    tls: ssl.SSLContext | None = None,
    seed: int = 0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Sends `payload` in pieces of random sizes, so frames are split across reads."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    rng = random.Random(seed)
    pos = 0
    while pos < len(payload):
        size = rng.choice((1, 7, 100, 1500, 9000, 70000))
        writer.write(payload[pos : pos + size])
        await writer.drain()
        pos += size
    return reader, writer


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def send_udp(server: SyslogServer, messages: list[bytes], window: int = 100) -> None:
    """Sends in windows, each once the server has accounted for the one before: a burst
    larger than the socket buffer would be dropped by the kernel, not by the server."""
    assert server.udp_port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for start in range(0, len(messages), window):
            chunk = messages[start : start + window]
            for data in chunk:
                sock.sendto(data, ("127.0.0.1", server.udp_port))
            sent = start + len(chunk)
            await until(lambda sent=sent: accounted(server) >= sent)
    finally:
        sock.close()


def accounted(server: SyslogServer) -> int:
    c = server.counters
    return c["received_udp"] + c["udp_dropped"] + c["udp_kernel_dropped"]


def test_10000_tcp_messages_arrive_once_and_in_order_with_both_framings() -> None:
    trailers = (b"\n", b"\r\n", b"\0")
    counted = [message(b"octet", i) for i in range(5000)]
    lined = [message(b"newline", i) for i in range(5000)]

    async def main() -> tuple[Sink, dict[str, int]]:
        sink = Sink()
        async with SyslogServer(sink, udp_port=None) as server:
            assert server.tcp_port
            sent = await asyncio.gather(
                send_tcp(server.tcp_port, b"".join(map(octet_frame, counted)), seed=1),
                send_tcp(
                    server.tcp_port,
                    b"".join(m + trailers[i % 3] for i, m in enumerate(lined)),
                    seed=2,
                ),
            )
            await until(lambda: len(sink.items) >= 10_000)
            for _, writer in sent:
                await close(writer)
        return sink, server.counters

    sink, counters = asyncio.run(main())
    streams = sorted(sink.by_peer().values(), key=lambda s: s[0])
    assert streams == [lined, counted]
    assert all(item.transport == "tcp" for item in sink.items)
    assert all(item.peer.startswith("127.0.0.1:") for item in sink.items)
    assert counters["received_tcp"] == 10_000
    assert counters["connections"] == 2
    assert counters["framing_errors"] == counters["oversize"] == 0
    assert max(sink.batches) <= 1000
    assert counters["batches"] == len(sink.batches)


def test_10000_udp_datagrams_are_all_received_or_counted_as_dropped() -> None:
    sent = [message(b"udp", i) for i in range(10_000)]

    async def main() -> tuple[Sink, dict[str, int]]:
        sink = Sink()
        async with SyslogServer(sink, tcp_port=None) as server:
            await send_udp(server, sent)
        return sink, server.counters

    sink, counters = asyncio.run(main())
    assert counters["received_udp"] + counters["udp_dropped"] == 10_000
    assert counters["udp_kernel_dropped"] == 0
    assert counters["received_udp"] > 0
    got = [item.data for item in sink.items]
    assert len(got) == counters["received_udp"]
    assert len(set(got)) == len(got)
    assert set(got) <= set(sent)
    assert {item.transport for item in sink.items} == {"udp"}


def test_slow_sink_tcp_backpressure_loses_nothing_and_udp_drops_are_counted() -> None:
    lines = [message(b"slow", i) for i in range(1000)]
    datagrams = [message(b"slow-udp", i) for i in range(1000)]

    async def main() -> tuple[Sink, dict[str, int], int]:
        sink = Sink(delay=0.005)
        async with SyslogServer(sink, queue_size=20, batch_size=10, linger=0.01) as server:
            assert server.tcp_port
            _, writer = await send_tcp(server.tcp_port, b"\n".join(lines) + b"\n")
            await until(lambda: server.counters["received_tcp"] == 1000)
            await close(writer)
            await send_udp(server, datagrams, window=50)
        tcp = sum(1 for item in sink.items if item.transport == "tcp")
        return sink, server.counters, tcp

    sink, counters, tcp = asyncio.run(main())
    assert [i.data for i in sink.items if i.transport == "tcp"] == lines
    assert tcp == counters["received_tcp"] == 1000
    assert counters["tcp_backpressure"] > 0
    assert counters["received_udp"] + counters["udp_dropped"] == 1000
    assert counters["udp_dropped"] > 0
    assert counters["udp_kernel_dropped"] == 0
    assert sum(1 for i in sink.items if i.transport == "udp") == counters["received_udp"]


def test_stop_delivers_everything_already_received() -> None:
    async def main() -> tuple[int, int, dict[str, int]]:
        sink = Sink(delay=0.01)
        server = SyslogServer(sink, queue_size=1000, batch_size=10)
        await server.start()
        assert server.tcp_port
        _, writer = await send_tcp(
            server.tcp_port, b"".join(message(b"t", i) + b"\n" for i in range(500))
        )
        await send_udp(server, [message(b"u", i) for i in range(300)])
        await until(lambda: server.counters["received_tcp"] == 500)
        before = len(sink.items)
        await server.stop()
        await close(writer)
        return before, len(sink.items), server.counters

    before, after, counters = asyncio.run(main())
    assert before < 800
    assert after == 800
    assert counters["lost_at_stop"] == 0


def test_batches_are_cut_at_batch_size_or_after_linger() -> None:
    async def main() -> tuple[Sink, Sink, float]:
        full, lingering = Sink(), Sink()
        async with SyslogServer(full, udp_port=None, batch_size=1000) as server:
            assert server.tcp_port
            _, writer = await send_tcp(
                server.tcp_port, b"".join(message(b"b", i) + b"\n" for i in range(2500))
            )
            await until(lambda: len(full.items) == 2500)
            await close(writer)
        async with SyslogServer(lingering, tcp_port=None, linger=0.05) as server:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            started = time.monotonic()
            for i in range(3):
                sock.sendto(message(b"l", i), ("127.0.0.1", server.udp_port or 0))
            sock.close()
            await until(lambda: len(lingering.items) == 3)
            waited = time.monotonic() - started
        return full, lingering, waited

    full, lingering, waited = asyncio.run(main())
    assert max(full.batches) == 1000
    assert sum(full.batches) == 2500
    assert lingering.batches == [3]
    assert waited < 5.0


def test_oversize_messages_are_cut_counted_and_the_stream_goes_on() -> None:
    limit = 1024

    async def main() -> tuple[Sink, dict[str, int]]:
        sink = Sink()
        async with SyslogServer(sink, max_message=limit) as server:
            assert server.tcp_port and server.udp_port
            # 200 kB spans several reads: the cut message must not be buffered whole.
            _, lined = await send_tcp(server.tcp_port, b"A" * 200_000 + b"\nafter-newline\n")
            _, counted = await send_tcp(
                server.tcp_port, octet_frame(b"B" * 200_000) + octet_frame(b"after-octet")
            )
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.sendto(b"C" * 2000, ("127.0.0.1", server.udp_port))
            sock.close()
            await until(lambda: len(sink.items) == 5)
            for writer in (lined, counted):
                await close(writer)
        return sink, server.counters

    sink, counters = asyncio.run(main())
    streams = sorted(sink.by_peer().values())
    assert streams == [
        [b"A" * limit, b"after-newline"],
        [b"B" * limit, b"after-octet"],
        [b"C" * limit],
    ]
    assert counters["oversize"] == 3
    assert counters["framing_errors"] == 0


@pytest.mark.parametrize(
    "bad",
    [b"12x4 <13>x", b"007 <13>leading zero", b"99999999999 <13>count too long", b"12345678901234"],
)
def test_malformed_octet_count_is_counted_and_the_connection_closed(bad: bytes) -> None:
    async def main() -> tuple[Sink, dict[str, int], bytes]:
        sink = Sink()
        async with SyslogServer(sink, udp_port=None) as server:
            assert server.tcp_port
            reader, writer = await send_tcp(server.tcp_port, octet_frame(b"<13>good") + bad)
            closed_by_server = await asyncio.wait_for(reader.read(), WAIT)
            await until(lambda: len(sink.items) == 1)
            await close(writer)
        return sink, server.counters, closed_by_server

    sink, counters, rest = asyncio.run(main())
    assert rest == b""
    assert [item.data for item in sink.items] == [b"<13>good"]
    assert counters["framing_errors"] == 1


def test_connection_closed_inside_an_octet_counted_frame_is_a_framing_error() -> None:
    async def main() -> tuple[Sink, dict[str, int]]:
        sink = Sink()
        async with SyslogServer(sink, udp_port=None) as server:
            assert server.tcp_port
            _, writer = await send_tcp(server.tcp_port, octet_frame(b"<13>whole") + b"100 <13>cut")
            await close(writer)
            await until(lambda: server.counters["framing_errors"] == 1)
        return sink, server.counters

    sink, counters = asyncio.run(main())
    assert [item.data for item in sink.items] == [b"<13>whole"]
    assert counters["framing_errors"] == 1


def test_newline_framing_ends_the_last_message_at_connection_close() -> None:
    async def main() -> Sink:
        sink = Sink()
        async with SyslogServer(sink, udp_port=None) as server:
            assert server.tcp_port
            payload = b"<13>one\r\n\r\n<13>two\0<13>three"
            _, writer = await send_tcp(server.tcp_port, payload)
            await close(writer)
            await until(lambda: len(sink.items) == 3)
        return sink

    sink = asyncio.run(main())
    assert [item.data for item in sink.items] == [b"<13>one", b"<13>two", b"<13>three"]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        import ipaddress
        from datetime import UTC, datetime, timedelta

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("no certificate maker: neither the cryptography package nor openssl")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    public = private.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(private, hashes.SHA256())
    )
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def test_tls_messages_arrive_with_both_framings(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    counted = [message(b"tls-octet", i) for i in range(500)]
    lined = [message(b"tls-newline", i) for i in range(500)]

    async def main() -> tuple[Sink, dict[str, int]]:
        sink = Sink()
        async with SyslogServer(sink, udp_port=None, tls=server_tls) as server:
            assert server.tcp_port
            sent = await asyncio.gather(
                send_tcp(server.tcp_port, b"".join(map(octet_frame, counted)), client_tls),
                send_tcp(server.tcp_port, b"\n".join(lined) + b"\n", client_tls),
            )
            await until(lambda: len(sink.items) == 1000)
            for _, writer in sent:
                await close(writer)
        return sink, server.counters

    sink, counters = asyncio.run(main())
    assert sorted(sink.by_peer().values(), key=lambda s: s[0]) == [lined, counted]
    assert {item.transport for item in sink.items} == {"tls"}
    assert counters["received_tcp"] == 1000
    assert counters["connections"] == 2


def test_sink_failure_is_counted_and_later_batches_still_arrive() -> None:
    seen: list[bytes] = []

    async def flaky(batch: list[Received]) -> None:
        if any(item.data == b"<13>poison" for item in batch):
            raise ValueError("cannot store")
        seen.extend(item.data for item in batch)

    async def main() -> dict[str, int]:
        async with SyslogServer(flaky, udp_port=None, linger=0.0) as server:
            assert server.tcp_port
            _, writer = await send_tcp(server.tcp_port, b"<13>poison\n")
            await until(lambda: server.counters["sink_errors"] == 1)
            writer.write(b"<13>fine\n")
            await writer.drain()
            await until(lambda: seen == [b"<13>fine"])
            await close(writer)
        return server.counters

    counters = asyncio.run(main())
    assert counters["sink_errors"] == 1
