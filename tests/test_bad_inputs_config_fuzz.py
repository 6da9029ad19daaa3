"""Property tests: the YAML config loader, fed random and adversarial input, raises only
ConfigError (never another traceback), within a deadline and a bounded memory peak."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tadrop.config import ConfigError, RunConfig, load_config

MEMORY_LIMIT = 64 * 2**20  # bytes of Python allocations while loading one file
FUZZ = settings(
    max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow], database=None
)
KEYS = [*RunConfig.model_fields, "a", "b", "scaling", "path", "max_points", "<<", "", "1"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["ties", "tadrop", "emr", ".nan", "-.inf", "../../x", "${HOME}", "5GB"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6
        ),
    ),
    max_leaves=40,
)


def load_bounded(data: bytes) -> None:
    """Load ``data`` as run.yaml; only ConfigError may escape, and memory stays bounded."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.yaml"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            load_config(path)
        except ConfigError as error:
            assert str(path) in str(error)  # every message names the file
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"peak {peak / 2**20:.0f} MiB"


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    load_bounded(data)


@FUZZ
@given(st.text(max_size=500))
def test_random_text(text: str) -> None:
    load_bounded(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(documents)
def test_random_documents_with_config_keys(document: object) -> None:
    load_bounded(yaml.safe_dump(document, allow_unicode=True).encode("utf-8", "surrogatepass"))


@FUZZ
@given(depth=st.integers(1, 12), width=st.integers(1, 12), key=st.sampled_from(KEYS))
def test_alias_expansion(depth: int, width: int, key: str) -> None:
    """Billion-laughs style: each level lists the previous one ``width`` times."""
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
    lines.append(f"{key or 'k'}: *l{depth - 1}")
    load_bounded("\n".join(lines).encode())


@FUZZ
@given(depth=st.integers(1, 400), opener=st.sampled_from(["[", "{a: ", "- "]))
def test_deep_nesting(depth: int, opener: str) -> None:
    if opener == "- ":
        text = "".join(" " * (2 * level) + "-\n" for level in range(depth)) + "x\n"
    else:
        closer = "]" if opener == "[" else "}"
        text = "method: " + opener * depth + "x" + closer * depth + "\n"
    load_bounded(text.encode())


@FUZZ
@given(st.sampled_from(["a: &a [*a]", "a: &a {b: *a}", "&a [*a, *a]", "a: &x\n  b: *x"]))
def test_recursive_aliases(text: str) -> None:
    load_bounded(text.encode())
