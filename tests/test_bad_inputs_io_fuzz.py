"""Property tests: the safetensors header parser on random and adversarial bytes.

Whatever the bytes, reading a header either succeeds or raises CheckpointError (never a
KeyError, IndexError, TypeError, UnicodeDecodeError, struct.error or RecursionError), within
a deadline, and a huge declared length allocates nothing like it.
"""

from __future__ import annotations

import json
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tadrop.io import CheckpointError
from tadrop.io.formats import _read_index
from tadrop.io.lora_config import read_adapter_config
from tadrop.io.safetensors_format import DTYPES, header_of_bytes, read_header

FUZZ = settings(
    max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
# Entries that look nearly right: real field names, values of any JSON type or plausible ones.
entries = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from([*DTYPES, "F4", ""]) | json_values,
        "shape": st.lists(st.integers(-2, 2**40), max_size=3) | json_values,
        "data_offsets": st.lists(st.integers(-2, 2**40), min_size=0, max_size=3) | json_values,
    },
)
headers = st.dictionaries(
    st.text(max_size=10) | st.just("__metadata__"), entries | json_values, max_size=5
)


def assert_parses_or_refuses(data: bytes) -> None:
    try:
        header_of_bytes("fuzz.safetensors", data)
    except CheckpointError as error:
        assert str(error).startswith("fuzz.safetensors: ")


def file_bytes(header: object, data_size: int = 0, *, declared: int | None = None) -> bytes:
    encoded = json.dumps(header).encode()
    length = len(encoded) if declared is None else declared
    return struct.pack("<Q", length) + encoded + b"\0" * data_size


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data):
    assert_parses_or_refuses(data)


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_after_a_consistent_length_prefix(body):
    assert_parses_or_refuses(struct.pack("<Q", len(body)) + body)


@FUZZ
@given(json_values, st.integers(0, 64))
def test_any_json_document_as_header(header, data_size):
    assert_parses_or_refuses(file_bytes(header, data_size))


@FUZZ
@given(headers, st.integers(0, 64))
def test_nearly_valid_headers(header, data_size):
    assert_parses_or_refuses(file_bytes(header, data_size))


@FUZZ
@given(headers, st.integers(0, 2**64 - 1))
def test_any_declared_length(header, declared):
    assert_parses_or_refuses(file_bytes(header, 16, declared=declared))


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,  # JSON nested deeper than the parser's recursion limit
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"\xff\xfe\x00\x00" * 8,  # not UTF-8
        b'"' + b"\\ud800" + b'"',  # a lone surrogate escape
        b"1" * 5000,  # an integer longer than Python's int-from-string limit
        b'{"t": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}',  # unhashable dtype
        b'{"t": {"dtype": "F32", "shape": [true], "data_offsets": [false, true]}}',
        b'{"t": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}',
        b'{"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}',
        b'{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {}}',
        b'{"__metadata__": {"k": 1}}',
    ],
    ids=lambda data: repr(data[:24]),
)
def test_adversarial_headers_are_refused_with_the_file_named(data):
    with pytest.raises(CheckpointError, match="fuzz.safetensors: "):
        header_of_bytes("fuzz.safetensors", struct.pack("<Q", len(data)) + data)


def test_many_duplicate_keys_are_found_in_linear_time():
    pairs = ",".join(f'"k{i}": {{}}' for i in range(200_000))
    data = ("{" + pairs + ', "k0": {}}').encode()
    with pytest.raises(CheckpointError, match="duplicate keys"):
        header_of_bytes("fuzz.safetensors", struct.pack("<Q", len(data)) + data)


@pytest.mark.parametrize("declared", [2**63, 2**64 - 1, 99_000_000])
def test_a_huge_declared_header_length_allocates_nothing_like_it(tmp_path, declared):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", declared) + b"{}" + b"\0" * 1000)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="the header claims"):
            read_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_a_valid_header_still_parses():
    header = {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2],
              "data_offsets": [0, 8]}}  # fmt: skip
    parsed = header_of_bytes("ok.safetensors", file_bytes(header, 8))
    assert parsed.entries["w"].shape == (2,) and parsed.metadata == {"format": "pt"}


# --- adapter_config.json and the shard index: the other JSON files read beside the weights ---

adapter_configs = st.dictionaries(
    st.sampled_from(
        [
            "r",
            "lora_alpha",
            "rank_pattern",
            "alpha_pattern",
            "use_rslora",
            "use_dora",
            "fan_in_fan_out",
            "peft_type",
            "target_modules",
        ]
    )  # fmt: skip
    | st.text(max_size=6),
    json_values
    | st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    | st.integers(-2, 64),
    max_size=6,
)


@FUZZ
@given(adapter_configs | json_values)
def test_any_adapter_config_is_read_or_refused_naming_the_file(tmp_path_factory, config):
    path = tmp_path_factory.mktemp("adapter") / "adapter_config.json"
    path.write_text(json.dumps(config))
    try:
        read_adapter_config(path)
    except CheckpointError as error:
        assert str(error).startswith(f"{path}: ")


@pytest.mark.parametrize("name", ["adapter_config.json", "model.safetensors.index.json"])
def test_json_nested_too_deeply_beside_the_weights_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_text("[" * 100_000)
    read = read_adapter_config if name.startswith("adapter") else _read_index
    with pytest.raises(CheckpointError, match=f"{name}: not valid JSON \\(nested too deeply\\)"):
        read(path)
