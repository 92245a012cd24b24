"""Append-only result rows: one JSON object per line, flushed as each row completes, so an interrupted run
loses nothing already measured and a re-run skips what is done."""

from __future__ import annotations

import json
import os
from pathlib import Path


def row_key(file: str, codec: str, setting: str) -> str:
    return f"{file}\x1f{codec}\x1f{setting}"


class ResultStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interruption: that row is simply measured again
                self.rows[row_key(row["file"], row["codec"], row["setting"])] = row

    def done(self, file: str, codec: str, setting: str) -> bool:
        row = self.rows.get(row_key(file, codec, setting))
        return row is not None and not row.get("error")

    def add(self, row: dict) -> None:
        self.rows[row_key(row["file"], row["codec"], row["setting"])] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, allow_nan=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
