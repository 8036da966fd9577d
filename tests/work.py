"""What the workers leave in their work areas, for tests that check it is nothing."""

from __future__ import annotations

from pathlib import Path

from exportd.config import Settings
from exportd.kernel.workarea import LOCK_SUFFIX


def partial_files(settings: Settings) -> list[Path]:
    """The files being written in the workers' work areas (their lock files aside)."""
    files = (path for path in settings.work_path.rglob("*") if path.is_file())
    return [path for path in files if path.suffix != LOCK_SUFFIX]
