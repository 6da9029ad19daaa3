"""The shape rules of STYLE.md, checked over tadrop/ and dashboard/: no module over 400 lines,
no function over 60, and one home for the version and the THP switch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Files other engineers are still splitting (issue 11): the coordinator shrinks this list.
# An entry that no longer breaks a rule fails the test, so the list cannot go stale.
ALLOWED_LONG_MODULES: set[str] = set()
ALLOWED_LONG_FUNCTIONS: set[str] = set()


def _sources() -> list[Path]:
    return sorted(
        path
        for package in ("tadrop", "dashboard")
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def long_modules() -> set[str]:
    return {
        _relative(path)
        for path in _sources()
        if len(path.read_text().splitlines()) > MAX_MODULE_LINES
    }


def long_functions(paths: list[Path] | None = None) -> dict[str, int]:
    """``file::function`` -> lines, for every function (or method) over the limit."""
    found = {}
    for path in _sources() if paths is None else paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{_relative(path)}::{node.name}"] = lines
    return found


def _allowed(name: str, allowed: set[str]) -> bool:
    return name in allowed or name.split("::")[0] in allowed


def test_no_module_is_over_400_lines() -> None:
    assert sorted(long_modules() - ALLOWED_LONG_MODULES) == []


def test_no_function_is_over_60_lines() -> None:
    too_long = {
        name: n
        for name, n in long_functions().items()
        if not _allowed(name, ALLOWED_LONG_FUNCTIONS)
    }
    assert too_long == {}


@pytest.mark.parametrize("rule", ["modules", "functions"])
def test_the_allow_lists_name_only_files_that_still_break_a_rule(rule: str) -> None:
    if rule == "modules":
        assert sorted(ALLOWED_LONG_MODULES - long_modules()) == []
    else:
        breaking = set(long_functions()) | {name.split("::")[0] for name in long_functions()}
        assert sorted(ALLOWED_LONG_FUNCTIONS - breaking) == []


def test_the_check_finds_a_method_one_line_over_the_limit(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    source = tmp_path / "shape.py"
    source.write_text(
        f"class C:\n    def short(self):\n        pass\n\n    def long(self):\n{body}\n"
    )
    assert long_functions([source]) == {}
    source.write_text(source.read_text() + "        return x0\n")
    assert long_functions([source]) == {"shape.py::long": MAX_FUNCTION_LINES + 1}


@pytest.mark.parametrize(
    ("text", "home"),
    [
        ('os.environ.setdefault("THP_MEM_ALLOC_ENABLE"', "tadrop/__init__.py"),
        ("__version__ = ", "tadrop/version.py"),
    ],
)
def test_one_home(text: str, home: str) -> None:
    assert [_relative(path) for path in _sources() if text in path.read_text()] == [home]
