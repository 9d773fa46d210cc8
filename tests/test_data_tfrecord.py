"""TFRecord framing and tf.train.Example decoding without TensorFlow."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.data.samples import corrupt_tfrecord
from guiagent.data.tfrecord import iter_records, make_example, masked_crc, parse_example, write_records
from guiagent.errors import DataError


def test_masked_crc_matches_hand_computed_value():
    # CRC-32C("123456789") = 0xE3069283 (the standard check value of the Castagnoli CRC).
    # Masked: ((c >> 15) | (c << 17)) mod 2^32 = 0x0001C60D | 0x25060000 = 0x2507C60D; + 0xA282EAD8 = 0xC78AB0E5.
    assert masked_crc(b"123456789") == 0xC78AB0E5


def test_parse_example_reads_protobuf_wire_bytes_written_by_hand():
    # Example{features{feature{key: "a", value{int64_list{value: [5]}}}}}, encoded from the .proto by hand:
    # Int64List 0a 01 05 | Feature 1a 03 .. | entry 0a 01 61 12 05 .. | Features 0a 0a .. | Example 0a 0c ..
    wire = bytes.fromhex("0a0c" "0a0a" "0a0161" "1205" "1a03" "0a0105")
    assert parse_example(wire) == {"a": [5]}
    assert make_example({"a": 5}) == wire


def test_float_features_keep_float32_precision():
    parsed = parse_example(make_example({"yx": ("float", [0.1, 0.7])}))
    assert parsed["yx"] == [float(np.float32(0.1)), float(np.float32(0.7))]
    assert parsed["yx"][0] != 0.1  # the value is float32's, not the double we passed


@settings(max_examples=40, deadline=None)
@given(records=st.lists(st.binary(max_size=300), max_size=8), compress=st.booleans())
def test_records_round_trip(tmp_path_factory, records, compress):
    path = tmp_path_factory.mktemp("rec") / "file.tfrecord"
    assert write_records(path, records, compress=compress) == len(records)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    assert [data for _, data in iter_records(path)] == records


@settings(max_examples=40, deadline=None)
@given(features=st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(st.lists(st.binary(max_size=20), min_size=1, max_size=4),
              st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=4),
              st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=4)),
    max_size=6))
def test_examples_round_trip(features):
    assert parse_example(make_example(features)) == features


def test_corrupt_data_crc_names_file_and_record_and_reading_can_go_on(tmp_path):
    path = tmp_path / "f"
    write_records(path, [b"zero", b"one" * 10, b"two"])
    corrupt_tfrecord(path, 1)
    with pytest.raises(DataError) as err:
        list(iter_records(path))
    assert err.value.file == str(path) and err.value.record == 1
    errors = []
    assert [i for i, _ in iter_records(path, on_error=errors.append)] == [0, 2]
    assert [e.record for e in errors] == [1]


def test_corrupt_length_and_truncation_end_the_file(tmp_path):
    path = tmp_path / "f"
    write_records(path, [b"a" * 50, b"b" * 50], compress=False)
    raw = bytearray(path.read_bytes())
    raw[16 + 50 + 3] ^= 0x01  # a byte of record 1's length
    path.write_bytes(bytes(raw))
    errors = []
    assert [i for i, _ in iter_records(path, on_error=errors.append)] == [0]
    assert "length CRC" in str(errors[0]) and errors[0].record == 1
    path.write_bytes(gzip.compress(bytes(raw[:40])))
    with pytest.raises(DataError, match="truncated") as err:
        list(iter_records(path))
    assert err.value.record == 0


def test_not_an_example_is_a_value_error():
    with pytest.raises(ValueError, match="tf.train.Example"):
        parse_example(b"\xff\xff\xff")


@pytest.mark.parametrize("compress", [False, True])
def test_a_huge_length_with_a_valid_crc_is_a_truncated_record_not_an_allocation(tmp_path, compress):
    # The length field is CRC-protected, but a valid CRC proves only that the 8 bytes were written as they
    # are: a length of 2^62 must end the file as truncated, without asking for 2^62 bytes of memory.
    import struct

    length = struct.pack("<Q", 2**62)
    raw = length + struct.pack("<I", masked_crc(length)) + b"short"
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(DataError, match=f"says {2**62} bytes, the file ends 5 bytes later") as err:
        list(iter_records(path))
    assert err.value.file == str(path) and err.value.record == 0
    errors = []
    assert list(iter_records(path, on_error=errors.append)) == [] and len(errors) == 1
