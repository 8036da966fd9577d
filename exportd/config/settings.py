"""The settings tree.  Every field has a default, so exportd runs with no file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """All of exportd's settings (``exportd.toml`` keys, ``EXPORTD_*`` variables)."""

    home: str = "var"
    """Folder holding ``data.db`` (the data store), the job store and exported files."""

    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5000
    """Rows a source reads and a format writes at a time."""

    disable_plugins: list[str] = []
    """Plugins (entry-point or built-in module names) not to load."""

    @property
    def home_path(self) -> Path:
        """``home`` as a path."""
        return Path(self.home)

    @property
    def data_path(self) -> Path:
        """The embedded data store the built-in sources read."""
        return self.home_path / "data.db"

    @property
    def files_path(self) -> Path:
        """Where finished export files are kept."""
        return self.home_path / "files"
