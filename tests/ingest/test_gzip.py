"""Gzip inputs: a short read (format sniffing) inflates only what it reads; a whole read gives
what gzip.decompress gives (every member), within the size cap; damage is reported, not
raised, and what comes before it is read."""

from __future__ import annotations

import gzip
import io
import json
import random
import zlib
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.errors import InputError
from vigil.ingest import FileReport, Input, base, discover, read_events


def jsonl(n: int) -> bytes:
    return b"".join(json.dumps({"n": i, "pad": "x" * (i % 50)}).encode() + b"\n" for i in range(n))


def gzip_input(packed: bytes, opened: list[Any] | None = None) -> Input:
    """An Input of gzip bytes; every stream it opens is kept in `opened`."""

    def opener() -> IO[bytes]:
        stream = base.gunzipped(io.BytesIO(packed))
        if opened is not None:
            opened.append(stream)
        return stream

    return Input("test.gz", opener, compressed=True)


def read_in_pieces(source: Input, size: int) -> bytes:
    with source.open() as stream:
        return b"".join(iter(lambda: stream.read(size), b""))


def test_sniffing_a_gzip_inflates_only_what_it_reads() -> None:
    packed = gzip.compress(bytes(64 << 20), compresslevel=1)  # 64 MiB in a few hundred KiB
    opened: list[Any] = []
    source = gzip_input(packed, opened)

    assert source.head(4096) == bytes(4096)
    assert source.head(4) == bytes(4)
    assert [stream.raw._inflated for stream in opened] == [4096, 4]


def test_discovery_does_not_inflate_a_gzip(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl(10)))
    calls: list[int] = []
    inflate = base._GzipReader._inflate_some

    def counted(self: Any, limit: int) -> bytes:
        calls.append(limit)
        return inflate(self, limit)

    monkeypatch.setattr(base._GzipReader, "_inflate_some", counted)

    [source] = discover([path])
    assert calls == []
    report = FileReport(source.name)
    assert sum(len(batch) for batch in read_events(source, report)) == 10
    assert report.format == "jsonl" and not report.warnings


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 1 << 30),
    sizes=st.lists(st.integers(0, 200_000), min_size=1, max_size=4),
    level=st.sampled_from([0, 1, 6, 9]),
    tail=st.sampled_from([b"", b"\0" * 7, b"\n", b"junk" * 300]),
    piece=st.sampled_from([1, 7, 4096, 8192, 65536, 1 << 22]),
)
def test_whole_short_and_piecewise_reads_agree_with_gzip_decompress(
    seed: int, sizes: list[int], level: int, tail: bytes, piece: int
) -> None:
    rng = random.Random(seed)
    members = [
        bytes(rng.choice(b"abc\n{}") for _ in range(size // 2)) + rng.randbytes(size - size // 2)
        for size in sizes
    ]
    packed = b"".join(gzip.compress(member, compresslevel=level) for member in members) + tail
    content = b"".join(members)
    source = gzip_input(packed)

    report = FileReport(source.name)
    assert source.read_all(report) == content
    assert source.head(piece) == content[:piece]
    assert read_in_pieces(source, piece) == content
    garbage = [w.reason for w in report.warnings if "trailing garbage" in w.reason]
    assert len(garbage) == (1 if tail.strip(b"\0") else 0), report.warnings
    assert len(report.warnings) == len(garbage)


def test_whole_read_past_the_size_cap_is_refused_without_inflating_the_rest(
    monkeypatch,
) -> None:
    monkeypatch.setattr(base, "MAX_WHOLE_READ", 1 << 20)
    opened: list[Any] = []
    source = gzip_input(gzip.compress(bytes(64 << 20), compresslevel=1), opened)

    with pytest.raises(InputError, match="larger than 1 MiB once decompressed"):
        source.read_all(FileReport(source.name))
    assert opened[0].raw._inflated == (1 << 20) + 1


def test_truncated_gzip_is_read_up_to_the_cut_and_reported() -> None:
    content = jsonl(20_000)
    packed = gzip.compress(content)
    cut = packed[: len(packed) // 2]
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    source = gzip_input(cut)

    report = FileReport(source.name)
    assert source.read_all(report) == readable
    assert read_in_pieces(source, 1000) == readable
    [warning] = report.warnings
    assert warning.reason == f"gzip stream truncated after {len(readable)} bytes; read up to there"


def _salvaged_by_blocks(packed: bytes, step: int) -> bytes:
    """What inflating `step` compressed bytes at a time keeps before a corrupt block."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    kept = b""
    for start in range(0, len(packed), step):
        try:
            kept += inflate.decompress(packed[start : start + step])
        except zlib.error:
            break
    return kept


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_corrupt_gzip_is_reported_and_what_comes_before_the_damage_read(where: float) -> None:
    content = jsonl(50_000)
    packed = bytearray(gzip.compress(content))
    spot = int(len(packed) * where)
    packed[spot : spot + 16] = bytes(16)
    damaged = bytes(packed)
    # what inflating block by block keeps: every block before the one zlib rejects
    kept = _salvaged_by_blocks(damaged, base._GzipReader.STEP)
    assert kept and content.startswith(kept[:1000])
    source = gzip_input(damaged)

    report = FileReport(source.name)
    whole = source.read_all(report)

    assert whole.startswith(kept)
    assert [w.reason.split(" after ")[0] for w in report.warnings] == ["gzip data corrupt"]
    assert f"after {len(whole)} bytes" in report.warnings[0].reason
    for piece in (100, 8192, 1 << 22):
        assert read_in_pieces(source, piece).startswith(kept)


def test_gzip_member_of_a_zip_reads_whole(tmp_path: Path) -> None:
    import zipfile

    content = jsonl(3000)
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "a/events.jsonl.gz", gzip.compress(content[:5000]) + gzip.compress(content[5000:])
        )

    [source] = discover([path])

    assert source.head(10) == content[:10]
    assert source.read_all() == content


def test_a_clean_whole_gzip_is_inflated_at_once_and_anything_else_the_careful_way(
    monkeypatch,
) -> None:
    content = jsonl(20_000)
    careful: list[int] = []
    read_upto = base._GzipReader.read_upto

    def counted(self: Any, limit: int) -> bytes:
        careful.append(limit)
        return read_upto(self, limit)

    monkeypatch.setattr(base._GzipReader, "read_upto", counted)
    assert gzip_input(gzip.compress(content)).read_all(FileReport("x")) == content
    assert careful == []  # one member, checksum good: ISA-L in one call
    for odd in (gzip.compress(content) * 2, gzip.compress(content) + b"junk"):
        report = FileReport("x")
        assert gzip_input(odd).read_all(report) == content * (2 if odd[-4:] != b"junk" else 1)
    assert len(careful) == 2  # two members, trailing bytes: read block by block
    bad = bytearray(gzip.compress(content))
    bad[-8] ^= 1  # the checksum
    report = FileReport("x")
    gzip_input(bytes(bad)).read_all(report)
    assert len(careful) == 3 and report.warnings  # refused by ISA-L, reported by the careful way
