"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this imports as
``timing``)."""

from __future__ import annotations

import math
import time
from typing import Callable


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Seconds of the fastest of ``repeats`` calls: the least disturbed by other work on a shared machine."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
