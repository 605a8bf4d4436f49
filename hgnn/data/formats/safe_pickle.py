"""Load research-release pickles without letting them run code.

GTN and HGSL ship their graphs as pickles, and unpickling an arbitrary file can call any importable
function (``os.system`` included). The unpickler below resolves only an allow-list of globals, the
few that numpy arrays, scipy CSR/CSC matrices and HGSL's metadata need, so a hostile or damaged file
fails with a :class:`DataFormatError` instead of executing anything.
"""
from __future__ import annotations

import importlib
import io
import pickle
import struct

import numpy as np

from hgnn.errors import DataFormatError

_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"

# (module, name) as spelled inside a pickle -> (module, name) to import. Old pickles name the
# pre-NumPy-2 and pre-SciPy-1.8 module paths; importing those today warns or fails, so each
# spelling is redirected to where the object lives now.
_RESOLVE: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("builtins", "range"): ("builtins", "range"),
    ("builtins", "set"): ("builtins", "set"),
}
for _core in ("numpy.core", "numpy._core"):
    for _fn in ("_reconstruct", "scalar"):
        _RESOLVE[(f"{_core}.multiarray", _fn)] = (f"{_NUMPY_CORE}.multiarray", _fn)
for _fmt in ("csr", "csc"):
    for _mod in (f"scipy.sparse.{_fmt}", f"scipy.sparse._{_fmt}"):
        _RESOLVE[(_mod, f"{_fmt}_matrix")] = (f"scipy.sparse._{_fmt}", f"{_fmt}_matrix")

#: Every global a pickle may name: numpy arrays/scalars, scipy CSR/CSC, builtins ``range``/``set``.
DEFAULT_ALLOWED: frozenset[tuple[str, str]] = frozenset(_RESOLVE)
#: The subset needed by plain array / sparse-matrix pickles (GTN's files); no builtins.
ARRAYS_ONLY: frozenset[tuple[str, str]] = frozenset(k for k in _RESOLVE if k[0] != "builtins")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, where: str, allowed: frozenset[tuple[str, str]]) -> None:
        super().__init__(file)
        self._where = where
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._allowed:
            raise DataFormatError(
                self._where,
                f"pickle refers to forbidden global {module}.{name}; only numpy arrays and scipy "
                "sparse matrices are accepted",
            )
        real_module, real_name = _RESOLVE[(module, name)]
        return getattr(importlib.import_module(real_module), real_name)

    def persistent_load(self, pid: object) -> object:
        # Persistent ids hand object creation to the host program; these formats never use them.
        raise DataFormatError(self._where, "pickle uses persistent ids, which are not accepted")


def safe_load(
    data: bytes, where: str, allowed: frozenset[tuple[str, str]] | None = None
) -> object:
    """Unpickle ``data`` admitting only allow-listed globals.

    Args:
        data: the pickle's bytes.
        where: how to name the file in error messages (e.g. ``Source.where("edges.pkl")``).
        allowed: narrows the allow-list (pairs as spelled in the pickle); it must be a subset of
            :data:`DEFAULT_ALLOWED`, so a caller can never widen it to arbitrary callables.

    Raises:
        DataFormatError: the pickle names a global outside the allow-list, or is truncated or
            corrupt.
        ValueError: ``allowed`` holds a pair outside :data:`DEFAULT_ALLOWED`.
    """
    allow = DEFAULT_ALLOWED if allowed is None else frozenset(allowed)
    extra = allow - DEFAULT_ALLOWED
    if extra:
        names = ", ".join(sorted(f"{m}.{n}" for m, n in extra))
        raise ValueError(f"safe_load cannot allow {names}: not a known-safe global")
    try:
        return _RestrictedUnpickler(io.BytesIO(data), where, allow).load()
    except DataFormatError:
        raise
    # Besides the unpickler's own errors, allowed constructors fed bad arguments raise ValueError,
    # TypeError, ...: still a broken file, not a bug in the caller.
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RecursionError) as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DataFormatError(where, f"truncated or corrupt pickle ({detail})") from None
