"""Log rewinding for a resume: progress.csv and evaluations.csv cut back to the checkpoint's step."""

from __future__ import annotations

import csv
from pathlib import Path

from qzoo.checkpoint.durable import atomic_write
from qzoo.checkpoint.rundir import LOG_FILES

EVALUATIONS_FILE = LOG_FILES[1]


def rewind_logs(run_dir: Path, step: int, *, finishing: bool = False) -> None:
    """Cut progress.csv and evaluations.csv back to the rows at or before ``step`` (also dropping a line the
    process was killed in the middle of), so the resumed run appends without repeating a row. ``finishing``: the
    checkpoint is at the run's last step, which the loop saves before the final evaluation; an evaluations.csv row
    at ``step`` is that evaluation's (the run died after writing it, before model.pt) and goes too: the resume
    evaluates again and writes it once."""
    for name in LOG_FILES:
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        last = step - 1 if finishing and name == EVALUATIONS_FILE else step
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [row for row in reader if header and len(row) == len(header) and _step_of(row) <= last]
        if header is None:
            path.unlink()
            continue
        lines = [header, *rows]
        atomic_write(path, lambda f, lines=lines: f.write(_csv_text(lines).encode()))


def _step_of(row: list[str]) -> float:
    try:
        return int(row[0])
    except ValueError:
        return float("inf")


def _csv_text(rows: list[list[str]]) -> str:
    import io

    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()
