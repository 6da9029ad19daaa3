"""`adapter_config.json` of a PEFT LoRA adapter, validated before any tensor is read.

Only the keys tadrop uses are checked; PEFT writes many more, and they are kept as they are.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
)

from tadrop.io.errors import CheckpointError
from tadrop.io.json_files import read_json_file

Rank = Annotated[StrictInt, Field(ge=1)]
Alpha = StrictFloat  # an int is accepted too, a string or a bool is not


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class LoraAdapterConfig(BaseModel):
    """The keys of adapter_config.json that decide W = W0 + (alpha / r) B A; defaults are PEFT's."""

    model_config = ConfigDict(extra="allow")

    peft_type: str = "LORA"
    r: Rank = 8  # rank of every adapted layer unless rank_pattern says otherwise
    lora_alpha: Alpha = 8  # scale numerator: s = alpha / r
    rank_pattern: dict[str, Rank] = {}  # module-name regex -> rank
    alpha_pattern: dict[str, Alpha] = {}  # module-name regex -> alpha
    use_rslora: StrictBool = False  # s = alpha / sqrt(r)
    use_dora: StrictBool = False
    fan_in_fan_out: StrictBool = False  # GPT-2 Conv1D weights stored (in, out)
    base_model_name_or_path: str | None = None

    @field_validator("rank_pattern", "alpha_pattern", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("lora_alpha")
    @classmethod
    def _alpha_finite(cls, value: float) -> float:
        return _finite(value)

    @field_validator("rank_pattern", "alpha_pattern")
    @classmethod
    def _keys_are_regexes(cls, patterns: dict[str, float]) -> dict[str, float]:
        for pattern, value in patterns.items():
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(
                    f"key {pattern!r} is not a valid regular expression ({error})"
                ) from None
            _finite(value)
        return patterns


_EXPECTED = {
    "r": 'a whole number >= 1, e.g. "r": 8',
    "lora_alpha": 'a number, e.g. "lora_alpha": 16 (not a string)',
    "rank_pattern": 'an object of module-name regex -> rank, e.g. {"q_proj": 4}',
    "alpha_pattern": 'an object of module-name regex -> alpha, e.g. {"q_proj": 8}',
}


def _problem(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    expected = _EXPECTED.get(
        str(error["loc"][:1] and error["loc"][0]),
        "true or false" if "bool" in error["type"] else "",
    )
    got = json.dumps(error["input"], default=str)[:80]
    return f"{key!r}: {error['msg']} (got {got}" + (f"; expected {expected})" if expected else ")")


def read_adapter_config(path: Path) -> LoraAdapterConfig:
    """Read and validate `path` (an adapter_config.json); CheckpointError names each bad key."""
    raw = read_json_file(path, "adapter config", "save the adapter again")
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{path}: holds a JSON {type(raw).__name__}, not an object of settings such as "
            '{"peft_type": "LORA", "r": 8, "lora_alpha": 16}; save the adapter again with PEFT.'
        )
    try:
        return LoraAdapterConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(_problem(error) for error in err.errors())
        raise CheckpointError(
            f"{path}: invalid LoRA settings: {problems}. Fix these keys."
        ) from None
