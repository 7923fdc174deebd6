"""The compressions ClickHouse's HTTP interface speaks.

- HTTP `Content-Encoding` of a request body and `Accept-Encoding` of a response (the latter only
  with `enable_http_compression=1`): gzip, deflate, zstd, lz4 (frames), xz and bz2. Bodies may
  be several concatenated frames or members, as ClickHouse accepts.
- ClickHouse's own block compression (`decompress=1` for a request body, `compress=1` for a
  response): blocks of [CityHash128 checksum][method][compressed size][size][payload].
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Callable
from typing import Protocol

import lz4.block
import lz4.frame
import zstandard
from clickhouse_cityhash.cityhash import CityHash128

from rastro.warehouse.errors import (
    CANNOT_DECOMPRESS,
    CHECKSUM_DOESNT_MATCH,
    UNKNOWN_COMPRESSION_METHOD,
    WarehouseError,
)


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


class _Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


_DECOMPRESSORS: dict[str, Callable[[], _Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(wbits=31),
    "x-gzip": lambda: zlib.decompressobj(wbits=31),
    "deflate": lambda: zlib.decompressobj(),
    "zstd": lambda: zstandard.ZstdDecompressor().decompressobj(),
    "lz4": lambda: lz4.frame.LZ4FrameDecompressor(),
    "xz": lambda: lzma.LZMADecompressor(),
    "bz2": lambda: bz2.BZ2Decompressor(),
}


class _Lz4FrameCompressor:
    def __init__(self) -> None:
        self._frame = lz4.frame.LZ4FrameCompressor()
        self._header: bytes = self._frame.begin()

    def compress(self, data: bytes) -> bytes:
        header, self._header = self._header, b""
        return header + bytes(self._frame.compress(data))

    def flush(self) -> bytes:
        header, self._header = self._header, b""
        return header + bytes(self._frame.flush())


_COMPRESSORS: dict[str, Callable[[], _Compressor]] = {
    "gzip": lambda: zlib.compressobj(3, wbits=31),
    "deflate": lambda: zlib.compressobj(3),
    "zstd": lambda: zstandard.ZstdCompressor(level=1).compressobj(),
    "lz4": _Lz4FrameCompressor,
    "xz": lambda: lzma.LZMACompressor(preset=1),
    "bz2": lambda: bz2.BZ2Compressor(1),
}


class BodyDecoder:
    """Decodes a request body as it arrives, across concatenated frames."""

    def __init__(self, encoding: str) -> None:
        factory = _DECOMPRESSORS.get(encoding.strip().lower())
        if factory is None:
            raise WarehouseError(
                UNKNOWN_COMPRESSION_METHOD, f"Unknown Content-Encoding of HTTP request: {encoding}"
            )
        self._factory = factory
        self._current: _Decompressor | None = None

    def feed(self, data: bytes) -> bytes:
        out = []
        try:
            while data:
                if self._current is None:
                    self._current = self._factory()
                out.append(self._current.decompress(data))
                data = self._current.unused_data if self._current.eof else b""
                if self._current.eof:
                    self._current = None
        except (
            OSError,
            EOFError,
            ValueError,
            RuntimeError,
            zlib.error,
            lzma.LZMAError,
            zstandard.ZstdError,
        ) as exc:
            raise WarehouseError(
                CANNOT_DECOMPRESS, f"Cannot decompress request body: {exc}"
            ) from None
        return b"".join(out)

    def finish(self) -> None:
        if self._current is not None:
            raise WarehouseError(CANNOT_DECOMPRESS, "Request body ends inside a compressed frame")


def choose_response_encoding(accept_encoding: str) -> str | None:
    """The client's most preferred encoding we can produce (`Accept-Encoding` with q-values)."""
    best: tuple[float, int, str] | None = None
    for index, item in enumerate(accept_encoding.split(",")):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if name in _COMPRESSORS and quality > 0:
            candidate = (-quality, index, name)
            best = candidate if best is None or candidate < best else best
    return best[2] if best else None


def response_encoder(encoding: str) -> _Compressor:
    return _COMPRESSORS[encoding]()


# ClickHouse's block compression (Compression/CompressionInfo.h).
_METHOD_NONE, _METHOD_LZ4, _METHOD_ZSTD = 0x02, 0x82, 0x90
_HEADER = struct.Struct("<BII")  # method, compressed size incl. this header, raw size
_MAX_BLOCK = 1 << 30


def _checksum(data: bytes) -> bytes:
    value: int = CityHash128(data)
    return struct.pack("<QQ", value >> 64, value & 0xFFFFFFFFFFFFFFFF)  # high half first


def compress_block(data: bytes) -> bytes:
    payload: bytes = lz4.block.compress(data, store_size=False)
    block = _HEADER.pack(_METHOD_LZ4, _HEADER.size + len(payload), len(data)) + payload
    return _checksum(block) + block


class BlockDecoder:
    """Decodes ClickHouse-compressed blocks (`decompress=1`) as the body arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while len(self._buffer) >= 16 + _HEADER.size:
            method, size, raw_size = _HEADER.unpack_from(self._buffer, 16)
            if size < _HEADER.size or size > _MAX_BLOCK or raw_size > _MAX_BLOCK:
                raise WarehouseError(CANNOT_DECOMPRESS, "Corrupted compressed block header")
            if len(self._buffer) < 16 + size:
                break
            block = bytes(self._buffer[16 : 16 + size])
            if _checksum(block) != bytes(self._buffer[:16]):
                raise WarehouseError(
                    CHECKSUM_DOESNT_MATCH, "Checksum doesn't match: corrupted data"
                )
            del self._buffer[: 16 + size]
            payload = block[_HEADER.size :]
            try:
                if method == _METHOD_LZ4:
                    out.append(lz4.block.decompress(payload, uncompressed_size=raw_size))
                elif method == _METHOD_ZSTD:
                    out.append(zstandard.ZstdDecompressor().decompress(payload, raw_size))
                elif method == _METHOD_NONE:
                    out.append(payload)
                else:
                    raise WarehouseError(
                        UNKNOWN_COMPRESSION_METHOD, f"Unknown compression method {method:#x}"
                    )
            except (lz4.block.LZ4BlockError, zstandard.ZstdError) as exc:
                raise WarehouseError(CANNOT_DECOMPRESS, f"Cannot decompress block: {exc}") from None
        return b"".join(out)

    def finish(self) -> None:
        if self._buffer:
            raise WarehouseError(CANNOT_DECOMPRESS, "Request body ends inside a compressed block")
