"""Rate-distortion evaluation: run codecs over a folder of media, measure, and write a report.

    files --(each codec x setting x file)--> encode / decode / metrics --> results (JSON lines, resumable)
          --> aggregate per codec and setting --> BD-rates, RD plots, report.md / report.html

A subpackage of its own because it composes all the others (media I/O, codecs, metrics) and belongs to
none of them.
"""

from .report import write_report
from .runner import EvalConfig, run_evaluation

__all__ = ["EvalConfig", "run_evaluation", "write_report"]
