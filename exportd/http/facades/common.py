"""What the seed-compatible facades share, whatever API they imitate."""

from __future__ import annotations

from collections.abc import Mapping


def renamed(text: str, names: Mapping[str, str]) -> str:
    """``text`` with each of exportd's field names in ``names`` replaced by the facade's,
    in the order of ``names`` (so that a longer name is replaced before a name it holds)."""
    for exportd_name, name in names.items():
        text = text.replace(exportd_name, name)
    return text
