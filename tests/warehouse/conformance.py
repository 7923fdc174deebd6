"""Helpers for the conformance suite (tests/warehouse/test_conformance_*.py): raw HTTP requests
to the warehouse under test, and ClickHouse's block compression done independently of
rastro.warehouse.compression (so that a bug there cannot hide itself)."""

from __future__ import annotations

import base64
import http.client
import io
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit

import zstandard
from clickhouse_cityhash.cityhash import CityHash128
from clickhouse_driver.compression.lz4 import Compressor as Lz4Compressor
from clickhouse_driver.compression.lz4 import Decompressor as Lz4Decompressor
from clickhouse_driver.reader import read_binary_uint8, read_binary_uint128
from clickhouse_driver.writer import write_binary_uint128

# True when the suite runs against a real ClickHouse server (CLICKHOUSE_TEST_URL).
REAL_SERVER = bool(os.environ.get("CLICKHOUSE_TEST_URL"))

LZ4_METHOD, ZSTD_METHOD = 0x82, 0x90


@dataclass(frozen=True)
class Target:
    """Where the warehouse under test listens, and its default account."""

    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 8123,
            unquote(parts.username or "default"),
            unquote(parts.password or ""),
        )

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def basic_auth(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        user = self.user if user is None else user
        password = self.password if password is None else password
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool = True  # False: the body ended abnormally (broken chunked stream)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def exception_code(self) -> int | None:
        value = self.headers.get("X-ClickHouse-Exception-Code")
        return int(value) if value is not None else None


def read_response(response: http.client.HTTPResponse) -> Response:
    """Reads a whole response; a body cut short is returned with complete=False."""
    complete = True
    try:
        body = response.read()
    except http.client.IncompleteRead as exc:
        body, complete = bytes(exc.partial), False
    except (ConnectionError, http.client.HTTPException):
        body, complete = b"", False
    return Response(response.status, response.headers, body, complete)


def request(
    target: Target,
    params: Mapping[str, str] | None = None,
    body: bytes | str | Iterable[bytes] | None = None,
    *,
    method: str = "POST",
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    auth: bool = True,
    connection: http.client.HTTPConnection | None = None,
    encode_chunked: bool = False,
) -> Response:
    """One request. `auth` adds HTTP basic credentials of the target's account; pass a
    `connection` to send it on a kept-alive connection (it is then left open)."""
    url = path + ("?" + urlencode(params) if params else "")
    all_headers = dict(target.basic_auth()) if auth else {}
    all_headers.update(headers or {})
    conn = connection or target.connection()
    try:
        conn.request(
            method,
            url,
            body=body.encode() if isinstance(body, str) else body,
            headers=all_headers,
            encode_chunked=encode_chunked,
        )
        return read_response(conn.getresponse())
    finally:
        if connection is None:
            conn.close()


def query(target: Target, sql: str, **params: str) -> Response:
    """POSTs `sql` as the body, with URL parameters."""
    return request(target, params, sql)


# -- ClickHouse block compression (CompressionInfo.h), with clickhouse-driver's codec -------------
# (the Python client of ClickHouse's native protocol, proven against servers), so that the
# endpoint's own implementation is checked against an independent one.


def compress_blocks(data: bytes, method: int = LZ4_METHOD, block_size: int = 1 << 16) -> bytes:
    """`data` as ClickHouse-compressed blocks of at most `block_size` raw bytes each."""
    out = io.BytesIO()
    for start in range(0, max(len(data), 1), block_size):
        raw = data[start : start + block_size]
        if method == LZ4_METHOD:
            compressor = Lz4Compressor()
            compressor.write(raw)
            block = bytes([method]) + compressor.get_compressed_data(1)
        else:  # clickhouse-driver's zstd codec needs the `zstd` package: frame it here
            payload = zstandard.ZstdCompressor().compress(raw)
            block = struct.pack("<BII", method, 9 + len(payload), len(raw)) + payload
        write_binary_uint128(CityHash128(block), out)
        out.write(block)
    return out.getvalue()


def decompress_blocks(data: bytes) -> tuple[bytes, int]:
    """Decodes ClickHouse-compressed blocks, checking each checksum; returns the data and
    the number of blocks. Raises on anything malformed."""
    stream = io.BytesIO(data)
    out = bytearray()
    blocks = 0
    while stream.tell() < len(data):
        checksum = read_binary_uint128(stream)
        method = read_binary_uint8(stream)
        if method == LZ4_METHOD:
            out += Lz4Decompressor(stream).get_decompressed_data(method, checksum, 1)
        elif method == ZSTD_METHOD:
            size, raw_size = struct.unpack("<II", stream.read(8))
            payload = stream.read(size - 9)
            block = struct.pack("<BII", method, size, raw_size) + payload
            if CityHash128(block) != checksum:
                raise ValueError("checksum mismatch")
            out += zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_size)
        else:
            raise ValueError(f"unexpected compression method {method:#x}")
        blocks += 1
    return bytes(out), blocks
