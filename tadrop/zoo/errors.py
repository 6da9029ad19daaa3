"""Errors the demo zoo raises for users: each names the file or package and the fix."""

from __future__ import annotations


class ZooError(ValueError):
    """Something about the demo zoo (its sources, its cache or a request) is not usable."""


class MissingSourceError(ZooError):
    """A package or Debian data file the zoo is built from is not installed."""

    def __init__(self, what: str, install: str) -> None:
        self.install = install
        super().__init__(f"{what} is not installed. Install it with: {install}")


class CorruptZooError(ZooError):
    """A zoo folder on disk is incomplete or does not match its manifest."""


class UnsafePickleError(ZooError):
    """A pickle asked for something other than numpy arrays and numeric dtypes."""
