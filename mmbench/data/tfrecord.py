"""TFRecord files and ``tf.train.Example`` / ``tf.train.SequenceExample`` protos, without TensorFlow.

Framing of one record (little endian), as TensorFlow writes it::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

``masked_crc32c(x) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8 (mod 2**32)`` over CRC-32C (Castagnoli).
Files may be gzip-compressed (TensorFlow's ``compression_type="GZIP"``): ``compression="auto"`` (the
default) decides by the ``.gz`` in the file name (``x.tfrecord.gz``, ``x.tfrecord.gz-00000-of-00005``)
and, failing that, by the gzip magic bytes.

CRC-32C is computed in pure Python (a 256-entry table, a few MB/s), so :func:`read_records` always checks
the cheap length CRC (4 bytes per record) but checks the data CRC only with ``verify_crc=True``. Gzip files
carry their own CRC-32 over the decompressed stream, which ``gzip`` checks at the end of the file anyway.

Protos are decoded with a small hand-written protobuf wire-format decoder (no ``protobuf`` package, no
TensorFlow). The schema (tensorflow/core/example/{example,feature}.proto)::

    BytesList {repeated bytes value = 1}      FloatList {repeated float value = 1 [packed]}
    Int64List {repeated int64 value = 1 [packed]}
    Feature {oneof kind {BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3}}
    Features {map<string, Feature> feature = 1}          FeatureList {repeated Feature feature = 1}
    FeatureLists {map<string, FeatureList> feature_list = 1}
    Example {Features features = 1}     SequenceExample {Features context = 1; FeatureLists feature_lists = 2}

The decoder accepts packed and unpacked repeated scalars, skips unknown fields, and merges repeated
occurrences of a message field as protobuf does for maps (the last entry with a key wins). The encoder
writes packed scalars, map entries in the given order, and is what the tests and fixtures use.

Errors (:class:`TFRecordError`, a ``DataError``) name the file and the 0-based record number.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbench.errors import DataError

__all__ = [
    "Example", "Feature", "ProtoError", "SequenceExample", "TFRecordError", "crc32c", "decode_example",
    "decode_sequence_example", "encode_example", "encode_sequence_example", "feature", "masked_crc32c",
    "read_records", "write_records",
]


class TFRecordError(DataError):
    """A TFRecord file is truncated, corrupt or not a TFRecord file."""


class ProtoError(ValueError):
    """Bytes that are not a valid encoding of the expected proto message."""


# --------------------------------------------------------------------------------------------- CRC-32C
def _crc_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_TABLE = _crc_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``; ``crc32c(b"123456789") == 0xE3069283``."""
    table = _TABLE
    c = crc ^ 0xFFFFFFFF
    for b in bytes(data):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------- framing
def _is_gzip(path: Path, compression: str | None) -> bool:
    if compression is None or compression == "":
        return False
    c = compression.upper()
    if c == "GZIP":
        return True
    if c == "NONE":
        return False
    if c != "AUTO":
        raise ValueError(f"compression must be 'auto', 'GZIP', 'NONE' or None, not {compression!r}")
    if ".gz" in path.name:
        return True
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def read_records(path: str | Path, compression: str | None = "auto", verify_crc: bool = False) -> Iterator[bytes]:
    """Yield the data of each record of a TFRecord file.

    The length CRC is always checked; ``verify_crc=True`` also checks each record's data CRC (pure Python,
    slow on large files). Raises :class:`TFRecordError` naming the file and the record on corrupt data.
    """
    path = Path(path)
    if not path.is_file():
        raise TFRecordError(f"{path}: no such file")
    gz = _is_gzip(path, compression)
    index = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            while True:
                header = f.read(12)
                if not header:
                    return
                if len(header) < 12:
                    raise TFRecordError(f"{path}: record {index}: truncated header ({len(header)} of 12 bytes)")
                length, length_crc = struct.unpack("<QI", header)
                if masked_crc32c(header[:8]) != length_crc:
                    raise TFRecordError(f"{path}: record {index}: length CRC mismatch (corrupt file, or not "
                                        f"a TFRecord file{'' if gz else '; gzip-compressed?'})")
                data = f.read(length)
                if len(data) < length:
                    raise TFRecordError(f"{path}: record {index}: truncated data ({len(data)} of {length} bytes)")
                tail = f.read(4)
                if len(tail) < 4:
                    raise TFRecordError(f"{path}: record {index}: truncated data CRC")
                if verify_crc and masked_crc32c(data) != struct.unpack("<I", tail)[0]:
                    raise TFRecordError(f"{path}: record {index}: data CRC mismatch (corrupt record)")
                yield data
                index += 1
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise TFRecordError(f"{path}: record {index}: cannot read ({type(e).__name__}: {e})") from None


def frame_record(data: bytes) -> bytes:
    """One record in TFRecord framing."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def write_records(path: str | Path, records: Iterable[bytes], compression: str | None = "auto") -> int:
    """Write ``records`` to ``path`` (gzip per ``compression``, as in :func:`read_records`; gzip mtime 0 so
    the bytes are reproducible). Returns the number of records written."""
    path = Path(path)
    c = (compression or "NONE").upper()
    gz = c == "GZIP" or (c == "AUTO" and ".gz" in path.name)
    if c not in ("AUTO", "GZIP", "NONE"):
        raise ValueError(f"compression must be 'auto', 'GZIP', 'NONE' or None, not {compression!r}")
    frames = [frame_record(bytes(r)) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(b"".join(frames))
    else:
        path.write_bytes(b"".join(frames))
    return len(frames)


# --------------------------------------------------------------------------------------------- wire format
@dataclass
class Feature:
    """One ``tf.train.Feature``: ``kind`` is "bytes", "float", "int64", or None when no list is set."""

    kind: str | None
    values: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in (None, "bytes", "float", "int64"):
            raise ValueError(f"Feature kind must be 'bytes', 'float', 'int64' or None, not {self.kind!r}")


@dataclass
class Example:
    features: dict[str, Feature] = field(default_factory=dict)


@dataclass
class SequenceExample:
    context: dict[str, Feature] = field(default_factory=dict)
    feature_lists: dict[str, list[Feature]] = field(default_factory=dict)


def feature(values: Any, kind: str | None = None) -> Feature:
    """A Feature from Python values: str/bytes -> bytes_list (str as UTF-8), int -> int64_list,
    float -> float_list; a single value becomes a one-element list; give ``kind`` for empty lists."""
    if isinstance(values, Feature):
        return values
    if isinstance(values, (str, bytes, int, float)):
        values = [values]
    values = list(values)
    if kind is None:
        if not values:
            raise ValueError("feature([]): give kind= for an empty list")
        v0 = values[0]
        kind = "bytes" if isinstance(v0, (str, bytes)) else "int64" if isinstance(v0, int) else "float"
    if kind == "bytes":
        values = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
    elif kind == "int64":
        values = [int(v) for v in values]
    elif kind == "float":
        values = [float(v) for v in values]
    return Feature(kind, values)


def _varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _encode_feature(f: Feature) -> bytes:
    if f.kind is None:
        return b""
    if f.kind == "bytes":
        inner = b"".join(_field(1, v) for v in f.values)
        return _field(1, inner)
    if f.kind == "float":
        packed = struct.pack(f"<{len(f.values)}f", *f.values)
        return _field(2, _field(1, packed) if f.values else b"")
    packed = b"".join(_varint(v) for v in f.values)
    return _field(3, _field(1, packed) if f.values else b"")


def _encode_features(features: dict[str, Any]) -> bytes:
    return b"".join(_field(1, _field(1, k.encode("utf-8")) + _field(2, _encode_feature(feature(v))))
                    for k, v in features.items())


def encode_example(features: dict[str, Any]) -> bytes:
    """Serialise a ``tf.train.Example``; values are Features or anything :func:`feature` accepts."""
    return _field(1, _encode_features(features))


def encode_sequence_example(context: dict[str, Any], feature_lists: dict[str, list[Any]]) -> bytes:
    """Serialise a ``tf.train.SequenceExample``: per-page ``context`` features and per-step feature lists."""
    lists = b"".join(
        _field(1, _field(1, k.encode("utf-8")) + _field(2, b"".join(_field(1, _encode_feature(feature(f)))
                                                                      for f in fl)))
        for k, fl in feature_lists.items())
    return _field(1, _encode_features(context)) + _field(2, lists)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtoError("varint longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value): an int for varint/fixed fields, (start, stop) for
    length-delimited ones."""
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == 0:
            value, pos = _read_varint(buf, pos, end)
        elif wire == 2:
            length, pos = _read_varint(buf, pos, end)
            if pos + length > end:
                raise ProtoError(f"field {number}: length {length} runs past the end of the message")
            value = (pos, pos + length)
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        elif wire == 1:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        else:
            raise ProtoError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _decode_feature(buf: bytes, start: int, end: int) -> Feature:
    out = Feature(None, [])
    for number, wire, value in _fields(buf, start, end):
        if wire != 2 or number not in (1, 2, 3):
            continue  # unknown field
        kind = ("bytes", "float", "int64")[number - 1]
        if out.kind != kind:  # oneof: a later member replaces an earlier one
            out = Feature(kind, [])
        s, e = value
        vals = out.values
        for n, w, v in _fields(buf, s, e):
            if n != 1:
                continue
            if kind == "bytes":
                if w != 2:
                    raise ProtoError("BytesList.value must be length-delimited")
                vals.append(bytes(buf[v[0]:v[1]]))
            elif kind == "float":
                if w == 2:  # packed
                    if (v[1] - v[0]) % 4:
                        raise ProtoError("packed FloatList length is not a multiple of 4")
                    vals.extend(struct.unpack_from(f"<{(v[1] - v[0]) // 4}f", buf, v[0]))
                elif w == 5:
                    vals.append(struct.unpack("<f", struct.pack("<I", v))[0])
                else:
                    raise ProtoError("FloatList.value has the wrong wire type")
            else:
                if w == 2:  # packed
                    p, stop = v
                    while p < stop:
                        x, p = _read_varint(buf, p, stop)
                        vals.append(_signed64(x))
                elif w == 0:
                    vals.append(_signed64(v))
                else:
                    raise ProtoError("Int64List.value has the wrong wire type")
    return out


def _map_entry(buf: bytes, start: int, end: int) -> tuple[str, tuple[int, int] | None]:
    key, val = b"", None
    for number, wire, value in _fields(buf, start, end):
        if wire != 2:
            continue
        if number == 1:
            key = bytes(buf[value[0]:value[1]])
        elif number == 2:
            val = value
    try:
        return key.decode("utf-8"), val
    except UnicodeDecodeError:
        raise ProtoError(f"map key {key!r} is not UTF-8") from None


def _decode_features(buf: bytes, start: int, end: int, keys: Any, into: dict[str, Feature]) -> None:
    for number, wire, value in _fields(buf, start, end):
        if number != 1 or wire != 2:
            continue
        k, v = _map_entry(buf, *value)
        if keys is not None and k not in keys:
            continue
        into[k] = _decode_feature(buf, *v) if v is not None else Feature(None, [])


def _decode_feature_lists(buf: bytes, start: int, end: int, keys: Any, into: dict[str, list[Feature]]) -> None:
    for number, wire, value in _fields(buf, start, end):
        if number != 1 or wire != 2:
            continue
        k, v = _map_entry(buf, *value)
        if keys is not None and k not in keys:
            continue
        feats: list[Feature] = []
        if v is not None:
            for n, w, fv in _fields(buf, *v):
                if n == 1 and w == 2:
                    feats.append(_decode_feature(buf, *fv))
        into[k] = feats


def decode_example(data: bytes, keys: Iterable[str] | None = None) -> Example:
    """Parse a serialised ``tf.train.Example`` (``keys``: decode only these features)."""
    buf = bytes(data)
    keyset = None if keys is None else set(keys)
    out = Example()
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number == 1 and wire == 2:
            _decode_features(buf, value[0], value[1], keyset, out.features)
    return out


def decode_sequence_example(data: bytes, context_keys: Iterable[str] | None = None,
                            sequence_keys: Iterable[str] | None = None) -> SequenceExample:
    """Parse a serialised ``tf.train.SequenceExample``.

    ``context_keys`` / ``sequence_keys``: decode only these features (the others are skipped without
    being decoded, which makes a first pass over a large file cheap); None decodes everything.
    """
    buf = bytes(data)
    ck = None if context_keys is None else set(context_keys)
    sk = None if sequence_keys is None else set(sequence_keys)
    out = SequenceExample()
    for number, wire, value in _fields(buf, 0, len(buf)):
        if wire != 2:
            continue
        if number == 1:
            _decode_features(buf, value[0], value[1], ck, out.context)
        elif number == 2:
            _decode_feature_lists(buf, value[0], value[1], sk, out.feature_lists)
    return out
