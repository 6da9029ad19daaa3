"""Read numpy arrays from pickles without letting the pickle run anything else.

`pickle.load` calls whatever function a file names. The animal-mnist package ships its images
as (gzipped) pickles of plain numpy arrays, so the only things its files may name are numpy's
array reconstructor, `numpy.ndarray` and `numpy.dtype` with a numeric type. Anything else is
refused before it is looked up, and the result must be a numeric array.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tadrop.zoo.errors import UnsafePickleError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct

NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex: no objects, no records


def _numeric_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.kind not in NUMERIC_KINDS:
        raise UnsafePickleError(f"the pickle asks for dtype {dtype}; only numeric arrays allowed")
    return dtype


def _reconstruct_ndarray(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"the pickle asks to build {subtype!r}, not a numpy array")
    _numeric_dtype(dtype_code)
    return _numpy_reconstruct(np.ndarray, shape, dtype_code)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a plain numeric ndarray pickle needs."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _numeric_dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"the pickle asks for {module}.{name}; only numpy arrays and dtypes are allowed"
            )
        return found


def loads_numpy(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Unpickle one numeric numpy array from `data`, refusing any other object."""
    try:
        loaded = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{source}: {error}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as error:
        raise UnsafePickleError(f"{source}: not a readable numpy pickle ({error})") from None
    if not isinstance(loaded, np.ndarray) or loaded.dtype.kind not in NUMERIC_KINDS:
        raise UnsafePickleError(
            f"{source}: holds {type(loaded).__name__}, expected one numeric numpy array"
        )
    return loaded


def load_numpy_pickle(path: Path | str) -> np.ndarray:
    """Read a (optionally gzipped) pickle of one numeric numpy array from `path`."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        raw = gzip.decompress(raw)
    return loads_numpy(raw, source=str(path))
