"""Run configs: one YAML file describes a merge (its models, method, sparsifier, output, and
optionally an evaluation and a parameter sweep), validated before any tensor is read.

Structure and types are checked by pydantic (unknown keys, wrong types, unknown choices); the
merge parameters are then checked against the registry (``parameters_of`` and each class's
``validate``). Every problem is reported in one ``ConfigError`` naming ``file:line``, the key
and the allowed values. Paths are relative to the config file's folder; ``~`` and environment
variables (``${TADROP_HOME}``, which defaults to the demo zoo's home) are expanded. Every key
and its default are listed in docs/cli.md.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

LMMetric = Literal["perplexity", "multiple_choice", "exact_match"]
DTYPES = ("auto", "float32", "float16", "bfloat16")
MAX_SWEEP_POINTS = 1000  # a sweep above this is refused unless its max_points: says more
_BYTE_SIZE = TypeAdapter(ByteSize)


def default_tadrop_home() -> Path:
    """``$TADROP_HOME``, else the demo zoo's default home (``tadrop.zoo.tadrop_home``)."""
    from tadrop.zoo import tadrop_home

    return tadrop_home()


def expand_path(text: str, folder: Path) -> Path:
    """``~`` and ``${VAR}`` expanded, made absolute relative to ``folder``."""
    environ = {"TADROP_HOME": str(default_tadrop_home()), **os.environ}
    expanded = re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda match: environ.get(match.group(1) or match.group(2), match.group(0)),
        text,
    )
    unset = re.search(r"\$\{?(\w+)\}?", expanded)
    if unset:
        raise ValueError(f"environment variable {unset.group(1)} in {text!r} is not set")
    path = Path(expanded).expanduser()
    return path if path.is_absolute() else (folder / path)


def _resolve(value: Any, info: ValidationInfo, must_exist: bool) -> Path:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a path (a string), got {value!r}")
    context = info.context or {}
    path = expand_path(value, Path(context.get("folder", ".")))
    if must_exist and not context.get("template", False) and not path.exists():
        raise ValueError(
            f"path {value!r} does not exist (looked for {path}; relative paths start at the "
            "config file's folder)"
        )
    return path


InputPath = Annotated[Path, BeforeValidator(lambda value, info: _resolve(value, info, True))]
OutputPath = Annotated[Path, BeforeValidator(lambda value, info: _resolve(value, info, False))]


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string such as ``5GB`` or ``500MiB``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size such as 5GB or a number of bytes, got {value!r}")
    try:
        size = int(_BYTE_SIZE.validate_python(value))
    except ValidationError:
        raise ValueError(f"{value!r} is not a size; write e.g. 5GB, 500MB, 2GiB or bytes") from None
    if size <= 0:
        raise ValueError(f"size {value!r} must be positive")
    return size


def _models_as_mapping(value: Any) -> Any:
    """A list of paths becomes {folder or file name: path}, as ``load_family`` names them."""
    if not isinstance(value, list):
        return value
    mapping: dict[str, Any] = {}
    for item in value:
        stem = Path(str(item).rstrip("/")).name
        stem = stem if "." not in stem or Path(stem).suffix == "" else Path(stem).stem
        name, suffix = stem, 2
        while name in mapping:
            name, suffix = f"{stem}_{suffix}", suffix + 1
        mapping[name] = item
    return mapping


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DemoSource(_Section):
    """Use the demo zoo as the model family (built on first use)."""

    zoo: Literal["text", "image"]
    size: Literal["quick", "full"] = "quick"
    tasks: list[str] | None = None  # a subset of the zoo's tasks; all when omitted


class OutputConfig(_Section):
    path: OutputPath | None = None  # folder of the merged model (EMR: one subfolder per task)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: the base's dtypes
    max_shard_size: Annotated[int, BeforeValidator(parse_size)] = 5 * 2**30
    overwrite: bool = False


class EvalConfig(_Section):
    """How merges are scored (docs/cli.md): the evaluator kind, one data file or folder per
    task, and the kind's options. Checked here: paths exist, files fit the metric."""

    # causal_lm | clip | sequence_classification; inferred from the base's config.json if omitted
    kind: Literal["causal_lm", "clip", "sequence_classification"] | None = None
    tasks: list[str] | None = None  # tasks to evaluate; all of the family's when omitted
    csv: OutputPath | None = None  # default: OUT.eval.csv beside output.path (docs/cli.md)
    individual: bool = True  # also evaluate each fine-tuned model (for normalized accuracy)
    base: bool = True  # also evaluate the base model
    # causal LMs: perplexity | multiple_choice | exact_match (one for all tasks or per task);
    # inferred from each file's keys when omitted
    metric: LMMetric | dict[str, LMMetric] | None = None
    # own test sets, task -> path: CSV/JSONL (text, label) for sequence classifiers, a text or
    # JSONL file for causal LMs, an image folder (one subfolder per class) for CLIP
    data: dict[str, InputPath] | None = None
    template: str | list[str] = "a photo of a {}."  # CLIP class-name prompt(s)
    heads: dict[str, InputPath] | None = None  # CLIP: task -> classification head file
    tokenizer: InputPath | None = None  # default: the base folder's tokenizer
    batch_size: Annotated[int, Field(gt=0)] | None = None  # default: the evaluator's own
    max_new_tokens: Annotated[int, Field(gt=0)] = 32  # exact match: generated tokens
    add_bos: bool = True  # causal LMs: start with BOS (false: lm-evaluation-harness's default)
    # lm-evaluation-harness (tadrop[lm-eval]): family task -> harness task name(s), and a
    # folder of harness task YAMLs (e.g. pointing at local JSONL files)
    lm_eval_tasks: dict[str, str | list[str]] | None = None
    lm_eval_include: InputPath | None = None

    @field_validator("template")
    @classmethod
    def _template_has_a_slot(cls, value: str | list[str]) -> str | list[str]:
        from tadrop.evaluate.clip import check_templates

        check_templates(value)
        return value

    @model_validator(mode="after")
    def _data_fits_the_kind(self) -> EvalConfig:
        from tadrop.evaluate.lm_data import check_lm_file

        for task in sorted(set(self.heads or {}) - set(self.data or {})):
            raise ValueError(f"eval.heads.{task}: no eval.data.{task} image folder to use it on")
        for task, path in (self.data or {}).items():
            metric = self.metric.get(task) if isinstance(self.metric, dict) else self.metric
            if not path.exists():
                continue  # a template's placeholder
            if self.kind == "clip" and not path.is_dir():
                raise ValueError(f"eval.data.{task}: {path} must be an image folder for clip")
            if self.kind == "causal_lm" or (self.kind is None and metric is not None):
                try:
                    check_lm_file(path, metric)
                except ValueError as error:
                    raise ValueError(f"eval.data.{task}: {error}") from error
        return self


class SweepConfig(_Section):
    """Cartesian grid: every combination of the listed values is merged (and evaluated)."""

    method_params: dict[str, list[Any]] = Field(default_factory=dict)
    sparsifier_params: dict[str, list[Any]] = Field(default_factory=dict)
    max_points: int | None = None  # raise the limit (MAX_SWEEP_POINTS) deliberately

    @property
    def size(self) -> int:
        """The number of grid points, counted without enumerating them."""
        return math.prod(
            len(v) for v in [*self.method_params.values(), *self.sparsifier_params.values()]
        )

    @property
    def limit(self) -> int:
        return MAX_SWEEP_POINTS if self.max_points is None else self.max_points


class RunConfig(_Section):
    template: bool = False  # a template's paths are placeholders: not checked for existence
    name: str | None = None
    description: str | None = None
    base: InputPath | None = None
    models: Annotated[dict[str, InputPath] | None, BeforeValidator(_models_as_mapping)] = None
    demo: DemoSource | None = None
    method: str
    method_params: dict[str, Any] = Field(default_factory=dict)
    sparsifier: str | None = None  # none: the method's own default (TIES: magnitude top-20%)
    sparsifier_params: dict[str, Any] = Field(default_factory=dict)
    include: str | None = None
    exclude: str | None = None
    keys: Literal["strict", "common"] = "strict"
    align_prefixes: bool = False
    device: str = "auto"
    output: OutputConfig = Field(default_factory=OutputConfig)
    eval: EvalConfig | None = None
    sweep: SweepConfig | None = None
    source: Path | None = Field(default=None, exclude=True)  # the YAML file it was read from

    @property
    def label(self) -> str:
        return self.name or (self.source.stem if self.source else self.method)

    def merge_spec(self) -> tuple[str, str | None]:
        """(method, sparsifier) after presets are applied."""
        from tadrop.registry import resolve_preset

        return resolve_preset(self.method, self.sparsifier)

    def grid(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(label, method_params, sparsifier_params) for each sweep point (one without sweep)."""
        return sweep_grid(self.method_params, self.sparsifier_params, self.sweep)

    def build(self, method_params: dict | None = None, sparsifier_params: dict | None = None):
        """The (MergeMethod, Sparsifier | None) pair this config describes."""
        from tadrop import registry

        method, sparsifier = self.merge_spec()
        return registry.build_merge(
            method,
            sparsifier,
            self.method_params if method_params is None else method_params,
            self.sparsifier_params if sparsifier_params is None else sparsifier_params,
        )


def sweep_grid(method_params: dict, sparsifier_params: dict, sweep: SweepConfig | None):
    if sweep is None or not (sweep.method_params or sweep.sparsifier_params):
        return [("", dict(method_params), dict(sparsifier_params))]
    axes = [("method_params", key, values) for key, values in sweep.method_params.items()]
    axes += [("sparsifier_params", key, values) for key, values in sweep.sparsifier_params.items()]
    points = []
    for combination in itertools.product(*(values for _, _, values in axes)):
        params = {
            "method_params": dict(method_params),
            "sparsifier_params": dict(sparsifier_params),
        }
        for (section, key, _), value in zip(axes, combination, strict=True):
            params[section][key] = value
        label = ",".join(
            f"{key}={value}" for (_, key, _), value in zip(axes, combination, strict=True)
        )
        points.append((label, params["method_params"], params["sparsifier_params"]))
    return points
