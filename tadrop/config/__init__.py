"""Run configs: schema (pydantic models), checks (parameters against the registry), loading
(YAML with file:line messages). Every key and its default are listed in docs/cli.md."""

from tadrop.config.loading import load_config, validate_config
from tadrop.config.schema import (
    DTYPES,
    DemoSource,
    EvalConfig,
    OutputConfig,
    RunConfig,
    SweepConfig,
    default_tadrop_home,
    expand_path,
    parse_size,
    sweep_grid,
)
from tadrop.config.yaml_source import ConfigError

__all__ = [
    "DTYPES",
    "ConfigError",
    "DemoSource",
    "EvalConfig",
    "OutputConfig",
    "RunConfig",
    "SweepConfig",
    "default_tadrop_home",
    "expand_path",
    "load_config",
    "parse_size",
    "sweep_grid",
    "validate_config",
]
