"""The settings tree.  Every field has a default, so exportd runs with no file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec


class BrokerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The RabbitMQ connection of the engine and workers (``[broker]``)."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """AMQP URL; ``EXPORTD_BROKER__URL`` sets it from the environment."""

    confirm_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Seconds to wait for the broker to confirm a publish before it counts as failed."""

    prefetch: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 10
    """Unsettled messages a consumer may hold at once."""


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """All of exportd's settings (``exportd.toml`` keys, ``EXPORTD_*`` variables)."""

    home: str = "var"
    """Folder holding ``data.db`` (the data store), the job store and exported files."""

    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5000
    """Rows a source reads and a format writes at a time."""

    disable_plugins: list[str] = []
    """Plugins (entry-point or built-in module names) not to load."""

    storage: str = "local"
    """The storage plugin that keeps finished files (see ``exportd plugins``)."""

    broker: BrokerSettings = msgspec.field(default_factory=BrokerSettings)

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
