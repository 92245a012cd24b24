"""Process-wide settings and helpers that make the CPU paths faster; nothing here changes a result beyond
float noise.

Why: the overfitted codec's fit allocates and frees tens of tensors of 10-30 MB every step.  glibc's malloc
hands blocks that large back to the kernel on free and maps them afresh on the next allocation, so each
step pays for page faults and kernel zeroing of memory it just released (expensive in a virtual machine).
Raising the mmap and trim thresholds keeps that memory in the process for reuse: on its own it made a
fitting step of a 768x512 image on one thread about 1.2x faster (steps timed with and without it,
alternating); on 512x512 photos it gained nothing measurable (docs/overfit.md, "Encode time").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import warnings
from typing import Callable, TypeVar

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameter numbers
_MMAP_THRESHOLD = 32 << 20  # the largest value glibc accepts: blocks above it are always mapped
_TRIM_THRESHOLD = 1 << 30  # at most this much freed memory stays in the process before it is returned
_TOP_PAD = 64 << 20
_applied = False


def retain_freed_memory() -> bool:
    """Tell glibc to keep freed blocks of up to 32 MB for reuse (at most 1 GiB idle); idempotent.

    Returns whether the setting is in force: False on other C libraries, or when the environment variable
    ``POLYCODEC_KEEP_MALLOC`` is set (to leave the process's allocator as it is).
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("POLYCODEC_KEEP_MALLOC"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    for parameter, value in ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
                             (_M_TOP_PAD, _TOP_PAD)):
        mallopt(parameter, value)
    _applied = True
    return True


F = TypeVar("F", bound=Callable)
_compiled: dict[tuple[Callable, str], Callable] = {}


def compiled(function: F, probe: Callable[[Callable], None], device: str = "cpu") -> F:
    """``torch.compile(function, dynamic=True)`` if it works on ``device``, else ``function`` itself; tried once
    per function and device.

    Why: on the CPU, eager PyTorch runs a chain of elementwise operations as one pass over memory each, and
    their backward as as many again; compiled, the chain becomes one loop.  Compiling needs a C++ compiler
    and takes seconds (4 to 7 s on this project's 2-core machine), so callers use it only for long runs.
    ``probe(candidate)`` runs the candidate forward and backward on small inputs; if that raises (no
    compiler, an unsupported platform), or the environment variable ``POLYCODEC_NO_COMPILE`` is set, the
    plain function is used, with a warning in the first case.
    """
    key = (function, device)
    if key not in _compiled:
        _compiled[key] = function
        if not os.environ.get("POLYCODEC_NO_COMPILE"):
            import torch  # here, not at the top: this module's other helper must not need torch

            candidate = torch.compile(function, dynamic=True)
            quiet = logging.getLogger("torch.utils.cpp_extension")  # "no CUDA runtime is found" on CPU hosts
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                probe(candidate)
                _compiled[key] = candidate
            except Exception as error:  # noqa: BLE001 -- any failure to compile means: run it eagerly
                warnings.warn(f"torch.compile is unavailable here ({type(error).__name__}: {error}); "
                              f"running {function.__name__} uncompiled", RuntimeWarning, stacklevel=2)
            finally:
                quiet.setLevel(level)
    return _compiled[key]  # type: ignore[return-value]


__all__ = ["compiled", "retain_freed_memory"]
