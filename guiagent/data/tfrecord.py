"""TFRecord files and ``tf.train.Example`` protos, without TensorFlow.

A TFRecord file is a sequence of records, each framed as (all little-endian)::

    uint64 length
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

with ``masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2^32), CRC-32C being the Castagnoli
polynomial. Files may be GZIP-compressed as a whole (AITW and AndroidControl are); the reader detects
that from the gzip magic bytes, so callers never pass a compression flag.

``tf.train.Example`` is decoded with the ``protobuf`` package from a message definition built at run
time, mirroring tensorflow/core/example/{example,feature}.proto (package ``tensorflow``, proto3)::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }  Int64List { repeated int64 value = 1; }

Building the descriptor here keeps the wire format identical to TensorFlow's without depending on it.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from guiagent.errors import DataError

_MASK_DELTA = 0xA282EAD8
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 1 << 24  # 16 MiB

FeatureValue = list[bytes] | list[float] | list[int]


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: str | os.PathLike) -> BinaryIO:
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def _read_up_to(f: BinaryIO, size: int) -> bytes:
    """At most ``size`` bytes, read in chunks: a record's length field is only a claim (a corrupt one can say
    2^62 with a valid CRC), so memory grows with the bytes the file really holds, never with the claim."""
    parts = []
    while size > 0:
        part = f.read(min(size, _READ_CHUNK))
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def iter_records(path: str | os.PathLike,
                 on_error: Callable[[DataError], None] | None = None) -> Iterator[tuple[int, bytes]]:
    """Stream the records of one TFRecord file (plain or GZIP), verifying both CRCs.

    Args:
        path: The file.
        on_error: Called with each corrupt record's error instead of raising it. A bad data CRC skips
            just that record (the framing is intact); a bad length CRC, truncation or a broken gzip
            stream ends the file, since nothing after it can be framed.

    Yields:
        ``(index, data)`` with ``index`` the 0-based record number in the file.

    Raises:
        DataError: (without ``on_error``) corrupt framing or data (``file`` = path, ``record`` = index).
    """
    name = str(path)

    def fail(message: str, index: int) -> None:
        error = DataError(message, file=name, record=index)
        if on_error is None:
            raise error
        on_error(error)

    with _open(path) as f:
        index = 0
        while True:
            try:
                header = f.read(12)
                if not header:
                    return
                if len(header) < 12:
                    return fail("truncated record header", index)
                length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
                if masked_crc(length_bytes) != length_crc:
                    return fail("length CRC mismatch: the file is corrupt from here on", index)
                (length,) = struct.unpack("<Q", length_bytes)
                body = _read_up_to(f, length + 4)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:  # compressed stream corrupt or truncated
                return fail(f"unreadable compressed stream: {exc}", index)
            if len(body) < length + 4:
                return fail(f"truncated record: its length field says {length} bytes, the file ends "
                            f"{len(body)} bytes later", index)
            data, (data_crc,) = body[:length], struct.unpack("<I", body[length:])
            if masked_crc(data) != data_crc:
                fail("data CRC mismatch", index)
            else:
                yield index, data
            index += 1


def write_records(path: str | os.PathLike, records: Iterable[bytes], compress: bool = True) -> int:
    """Write records as a TFRecord file (GZIP-compressed like AITW's by default). Returns the count."""
    opener = gzip.open if compress else open
    count = 0
    with opener(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data)))
            count += 1
    return count


def _build_example_class() -> type:
    fdp = descriptor_pb2.FileDescriptorProto(name="guiagent_tf_example.proto", package="tensorflow", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    for name, ftype in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        msg = fdp.message_type.add(name=name)
        msg.field.add(name="value", number=1, type=ftype, label=F.LABEL_REPEATED)
    feature = fdp.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (field, tname) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")), start=1
    ):
        feature.field.add(name=field, number=number, type=F.TYPE_MESSAGE, type_name=f".tensorflow.{tname}",
                          label=F.LABEL_OPTIONAL, oneof_index=0)
    features = fdp.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, type_name=".tensorflow.Feature", label=F.LABEL_OPTIONAL)
    features.field.add(name="feature", number=1, type=F.TYPE_MESSAGE,
                       type_name=".tensorflow.Features.FeatureEntry", label=F.LABEL_REPEATED)
    example = fdp.message_type.add(name="Example")
    example.field.add(name="features", number=1, type=F.TYPE_MESSAGE, type_name=".tensorflow.Features",
                      label=F.LABEL_OPTIONAL)
    # A private pool: another library (TensorFlow itself, if installed) may register tensorflow.Example too.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _build_example_class()


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example`` into ``{key: list of values}``.

    Bytes features stay ``bytes``; float features are float32 values as Python floats; int64 features ints.

    Raises:
        ValueError: ``data`` is not a valid Example.
    """
    example = Example()
    try:
        example.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError; normalise it
        raise ValueError(f"not a tf.train.Example: {exc}") from None
    out: dict[str, FeatureValue] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[key] = list(getattr(feature, kind).value) if kind else []
    return out


def make_example(features: Mapping[str, Sequence[Any] | bytes | str | int | float]) -> bytes:
    """Serialize ``{key: value or list}`` as a ``tf.train.Example``.

    The list type is chosen from the values: ``bytes``/``str`` → bytes_list (str UTF-8 encoded),
    ``float`` → float_list, ``int`` → int64_list. A scalar is a one-element list. An empty list
    becomes an empty bytes_list unless the key is in a typed form ``(kind, [])`` — pass
    ``("float", [])`` / ``("int64", [])`` / ``("bytes", [])`` to choose.
    """
    example = Example()
    for key, value in features.items():
        kind = None
        if isinstance(value, tuple) and len(value) == 2 and value[0] in ("bytes", "float", "int64"):
            kind, value = value
        if isinstance(value, (bytes, str, int, float)):
            value = [value]
        values = list(value)
        if kind is None:
            first = values[0] if values else b""
            kind = "bytes" if isinstance(first, (bytes, str)) else "float" if isinstance(first, float) else "int64"
        feature = example.features.feature[key]
        if kind == "bytes":
            feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values)
        elif kind == "float":
            feature.float_list.value.extend(float(v) for v in values)
        else:
            feature.int64_list.value.extend(int(v) for v in values)
    return example.SerializeToString()
