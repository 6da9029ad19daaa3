"""The README's library example runs as written, on a small family laid out like its paths."""

import re
from pathlib import Path

from family_fixtures import write_family

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_library_example_runs(tmp_path, monkeypatch):
    code = re.search(
        r"## The library in ten lines\n\n```python\n(.*?)```", README.read_text(), re.S
    ).group(1)
    assert len(code.strip().splitlines()) <= 10
    base_dir, task_dirs = write_family(tmp_path / "models", tasks=2)
    task_dirs["task0"].rename(tmp_path / "models" / "news")
    task_dirs["task1"].rename(tmp_path / "models" / "tweets")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "merged" / "ties-tadrop" / "model.safetensors").is_file()
    assert (
        len(namespace["rates"])
        == len(namespace["stats"])
        == 2 * len(namespace["family"].tensor_names)
    )
