"""record(key, value) / dump(step) logging with pluggable writers (CSV, TensorBoard)."""

from __future__ import annotations

import csv
import math
from pathlib import Path


class CSVWriter:
    """One row per dump; the columns are fixed by the first row. Flushed at every row so that an
    interrupted run keeps everything it logged."""

    def __init__(self, path: Path, columns: list[str] | None = None, append: bool = False):
        self.path = Path(path)
        self.columns = columns
        self.append = append  # continue an existing file (a resumed run), with the columns of its header
        self._file = None
        self._writer = None

    def write(self, values: dict, step: int) -> None:
        if self._writer is None:
            header = None
            if self.append and self.path.is_file():
                with open(self.path, newline="") as f:
                    header = next(csv.reader(f), None)
            self.columns = header or self.columns or list(values)
            self._file = open(self.path, "a" if header else "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
            if not header:
                self._writer.writeheader()
        self._writer.writerow({k: _fmt(values.get(k)) for k in self.columns})
        self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()


def _fmt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class TensorBoardWriter:
    def __init__(self, log_dir: Path, prefix: str, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when used

        # purge_step (a resumed run): TensorBoard hides the events of earlier files at or after that step
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        self.prefix = prefix

    def write(self, values: dict, step: int) -> None:
        for key, value in values.items():
            if key != "step" and isinstance(value, (int, float)) and not (isinstance(value, float)
                                                                          and math.isnan(value)):
                self.writer.add_scalar(f"{self.prefix}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Logger:
    def __init__(self, writers: list):
        self.writers = writers
        self.values: dict = {}

    def record(self, key: str, value) -> None:
        self.values[key] = value

    def dump(self, step: int) -> dict:
        values, self.values = {"step": step, **self.values}, {}
        for writer in self.writers:
            writer.write(values, step)
        return values

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
