"""Files of the report: atomic writes, stale figures, and the check that a directory is writable."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection
from pathlib import Path

TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o644


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and os.replace.

    A reader sees the old file or the new one, never half of one; an interrupted write leaves
    no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, FILE_MODE)  # mkstemp makes it private; a report is for reading
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def remove_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove_unlisted_files(directory: Path, keep: Collection[str]) -> None:
    """Delete the files of `directory` not named in `keep`: stale figures of earlier runs."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink()


def writability_problem(directory: Path, try_it: bool = True) -> str | None:
    """Why `directory` cannot be used as (or created as) a writable directory; None if it can.

    With `try_it`, it is tried: created, a file written in it and removed, and the directories
    this created removed again (permissions alone do not tell: root, read-only mounts, /proc).
    """
    if directory.exists() and not directory.is_dir():
        return f"{directory} is an existing file, not a directory"
    created = [path for path in (directory, *directory.parents) if not path.exists()]
    existing = directory.parents[len(created) - 1] if created else directory
    if not existing.is_dir():
        return f"{directory} cannot be created: {existing} is a file"
    if not try_it:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".", suffix=TEMP_SUFFIX) as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as error:
        return f"{directory} cannot be created or written: {error.strerror or error}"
    finally:
        for path in created:  # the deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
    return None
