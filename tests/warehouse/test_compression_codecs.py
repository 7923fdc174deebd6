"""Body decoding and response encoding, checked against independent implementations."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

import lz4.frame
import pytest
import zstandard
from clickhouse_driver.compression.lz4 import Compressor as DriverLz4Compressor
from clickhouse_driver.streams.compressed import CompressedBlockOutputStream

from rastro.warehouse.compression import (
    BlockDecoder,
    BodyDecoder,
    choose_response_encoding,
    compress_block,
    response_encoder,
)
from rastro.warehouse.errors import (
    CANNOT_DECOMPRESS,
    CHECKSUM_DOESNT_MATCH,
    UNKNOWN_COMPRESSION_METHOD,
    WarehouseError,
)

PAYLOAD = b"".join(b"%d,row number %d\n" % (i, i) for i in range(20_000))

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "lz4": lz4.frame.compress,
    "xz": lzma.compress,
    "bz2": bz2.compress,
}


def _feed_in_pieces(decoder: BodyDecoder | BlockDecoder, data: bytes, size: int) -> bytes:
    out = b"".join(decoder.feed(data[i : i + size]) for i in range(0, len(data), size))
    decoder.finish()
    return out


@pytest.mark.parametrize(
    ("encoding", "piece"),
    [(encoding, piece) for encoding in sorted(ENCODERS) for piece in (777, 1 << 20)]
    + [("gzip", 1), ("zstd", 1), ("lz4", 1)],  # frame headers split across reads
)
def test_body_decoder_handles_concatenated_frames(encoding: str, piece: int) -> None:
    halves = PAYLOAD[:10_000], PAYLOAD[10_000:]
    body = b"".join(ENCODERS[encoding](half) for half in halves)
    assert _feed_in_pieces(BodyDecoder(encoding), body, piece) == PAYLOAD


def test_body_decoder_refuses_unknown_truncated_and_corrupt_bodies() -> None:
    with pytest.raises(WarehouseError) as unknown:
        BodyDecoder("snappy-ish")
    assert unknown.value.code == UNKNOWN_COMPRESSION_METHOD

    truncated = BodyDecoder("gzip")
    truncated.feed(gzip.compress(PAYLOAD)[:-20])
    with pytest.raises(WarehouseError) as error:
        truncated.finish()
    assert error.value.code == CANNOT_DECOMPRESS

    with pytest.raises(WarehouseError) as corrupt:
        BodyDecoder("zstd").feed(b"\x28\xb5\x2f\xfd" + b"\xff" * 64)
    assert corrupt.value.code == CANNOT_DECOMPRESS


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "lz4", "xz", "bz2"])
def test_response_encoder_output_decodes_with_standard_tools(encoding: str) -> None:
    encoder = response_encoder(encoding)
    body = b"".join(encoder.compress(PAYLOAD[i : i + 4096]) for i in range(0, len(PAYLOAD), 4096))
    body += encoder.flush()
    decoders = {
        "gzip": gzip.decompress,
        "deflate": zlib.decompress,
        "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
        "lz4": lz4.frame.decompress,
        "xz": lzma.decompress,
        "bz2": bz2.decompress,
    }
    assert decoders[encoding](body) == PAYLOAD


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip", "gzip"),
        ("br, gzip;q=0.5, lz4", "lz4"),
        ("lz4;q=0.1, zstd;q=0.9", "zstd"),
        ("gzip;q=0, deflate", "deflate"),
        ("br", None),
        ("", None),
        ("identity", None),
        ("gzip;q=abc, zstd", "zstd"),
    ],
)
def test_response_encoding_follows_client_preferences(accept: str, chosen: str | None) -> None:
    assert choose_response_encoding(accept) == chosen


def _driver_compressed(data: bytes) -> bytes:
    """ClickHouse block compression as clickhouse-driver writes it (an independent codec)."""
    out = io.BytesIO()
    stream = CompressedBlockOutputStream(DriverLz4Compressor, 1 << 20, out, context=None)
    stream.fout.write(data)
    stream.finalize()
    return out.getvalue()


def test_block_codec_matches_clickhouse_driver() -> None:
    blocks = _driver_compressed(PAYLOAD[:50_000]) + _driver_compressed(PAYLOAD[50_000:])
    assert _feed_in_pieces(BlockDecoder(), blocks, 1000) == PAYLOAD
    ours = compress_block(PAYLOAD)
    assert _feed_in_pieces(BlockDecoder(), ours, 4096) == PAYLOAD
    assert ours == _driver_compressed(PAYLOAD)  # byte for byte: same checksum layout and header


def test_block_decoder_refuses_corruption_and_truncation() -> None:
    block = bytearray(compress_block(PAYLOAD))
    block[40] ^= 0xFF
    with pytest.raises(WarehouseError) as corrupt:
        BlockDecoder().feed(bytes(block))
    assert corrupt.value.code == CHECKSUM_DOESNT_MATCH

    truncated = BlockDecoder()
    truncated.feed(compress_block(PAYLOAD)[:-5])
    with pytest.raises(WarehouseError) as error:
        truncated.finish()
    assert error.value.code == CANNOT_DECOMPRESS
