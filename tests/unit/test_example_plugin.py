"""exportd finds the example third-party plugin (examples/exportd-example) through its
entry point, and blocks it by that name.

The package is installed into the test environment (tests/conftest.py).  Its own
tests, written with the test kit alone, are in examples/exportd-example/tests.
"""

from __future__ import annotations

from exportd.plugins.manager import Plugins


def test_the_plugin_is_found_through_its_entry_point_beside_the_built_ins() -> None:
    plugins = Plugins()
    assert {"weather", "rooms"} <= set(plugins.sources)
    assert {"markdown", "csv"} <= set(plugins.formats)
    for kind, name in (("source", "weather"), ("format", "markdown")):
        origin = plugins.origin(kind, name)
        assert (origin.plugin, origin.package) == ("example", "exportd-example 0.1.0")


def test_blocking_the_plugin_by_its_entry_point_name_removes_it() -> None:
    plugins = Plugins(builtins=False, blocked=["example"])
    assert "weather" not in plugins.sources
    assert "markdown" not in plugins.formats
