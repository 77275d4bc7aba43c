"""Writing output files: errors name the file, and names made from an instance stay in their folder."""

from __future__ import annotations

import re
from pathlib import Path


class OutputError(OSError):
    """An output file could not be written; the message names it and says why."""


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path`, raising `OutputError` naming the file (a full disk raises on write, where
    Python's own error carries no file name)."""
    path = Path(path)
    try:
        with path.open("w") as handle:
            handle.write(text)
    except OSError as err:
        raise OutputError(f"{path}: {err.strerror or err}") from None
    return path


def slug(name: str) -> str:
    """A file-name part made from a free-text name: letters, digits, '.', '-' and '_' kept, runs of anything
    else turned into one '-', no leading dot (so '../x' and 'a/b' cannot leave the folder)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-") or "instance"
