"""docs/runtime.md: the sample ``exportd.toml`` of each role in "Deploying on several
hosts" is a configuration exportd takes as written: its settings load, and the plugins
accept their tables (the ``s3`` storage its ``[plugins.s3]``) and find its storage."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from exportd.config import Settings
from exportd.plugins.manager import Plugins

RUNTIME = Path(__file__).parents[2] / "docs" / "runtime.md"
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def deployment_samples() -> list[str]:
    """The TOML blocks of the section "Deploying on several hosts"."""
    text = RUNTIME.read_text(encoding="utf-8")
    start = text.index("## Deploying on several hosts")
    section = text[start : text.index("\n## ", start + 1)]
    return TOML_BLOCK.findall(section)


def test_the_section_has_a_sample_per_role() -> None:
    assert len(deployment_samples()) == 2


@pytest.mark.parametrize("sample", deployment_samples(), ids=["engine", "worker"])
def test_each_sample_configuration_loads_with_its_plugins(sample: str) -> None:
    settings = msgspec.convert(tomllib.loads(sample), Settings)
    assert settings.data.url.startswith("postgresql://")
    storage = Plugins(settings=settings).storage(settings.storage)
    assert storage.name == "s3"
