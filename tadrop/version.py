"""The one home of tadrop's version: pyproject.toml reads it (``tool.setuptools.dynamic``)."""

__version__ = "0.1.0"
