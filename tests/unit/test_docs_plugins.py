"""docs/plugins.md: its Python examples run as written, the tests among them pass, and
every hook and every name of the public API has a section of its own.

The guide's Python blocks are loaded in order.  A block whose first line is a
file name comment (``# exportd_countdown.py``) becomes a module of that name,
so later blocks can import it; the ``test_*`` functions of the ``test_*.py``
blocks are run here, each with the fixtures it names (``tmp_path``, the test kit's
``exportd_demo``...).  A section is a heading that starts with the name
(``### exportd_sources(config)``, ``### `Source```), as Datasette's
``test_plugin_hooks_are_documented`` checks its hooks.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import exportd
from exportd.plugins import api, hookspecs

GUIDE = Path(__file__).parents[2] / "docs" / "plugins.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
FILE_NAME = re.compile(r"\A# (\w+)\.py\n")
TEST_FUNCTION = re.compile(r"^def (test_\w+)\(", re.MULTILINE)
HEADING = re.compile(r"^#{2,4} `?(\w+)(?:`|\(|$)", re.MULTILINE)


def python_blocks() -> list[tuple[int, str]]:
    """Each Python block of the guide with the line number it starts on."""
    text = GUIDE.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m[1]) for m in PYTHON_BLOCK.finditer(text)]


def module_name(index: int, code: str) -> str:
    match = FILE_NAME.match(code)
    return match[1] if match else f"plugins_md_block_{index}"


def example_tests() -> list[tuple[str, str]]:
    """(module, function) for every test function the guide's test files define."""
    return [
        (name, function)
        for index, (_, code) in enumerate(python_blocks())
        if (name := module_name(index, code)).startswith("test_")
        for function in TEST_FUNCTION.findall(code)
    ]


@pytest.fixture(scope="module")
def guide() -> Iterator[dict[str, types.ModuleType]]:
    """The guide's blocks, loaded in order as modules (removed again afterwards)."""
    modules: dict[str, types.ModuleType] = {}
    try:
        for index, (line, code) in enumerate(python_blocks()):
            name = module_name(index, code)
            module = types.ModuleType(name)
            sys.modules[name] = module  # before running it: msgspec resolves types through it
            modules[name] = module
            # Padding with newlines makes tracebacks point at the guide's own line numbers.
            exec(compile("\n" * (line - 1) + code, str(GUIDE), "exec"), module.__dict__)
        yield modules
    finally:
        for name in modules:
            sys.modules.pop(name, None)


def test_the_guide_defines_plugins_and_tests(guide: dict[str, types.ModuleType]) -> None:
    assert {"exportd_countdown", "exportd_senders", "test_countdown", "test_senders"} <= set(guide)
    assert len(example_tests()) >= 5


@pytest.mark.parametrize(("module", "function"), example_tests())
def test_an_example_test_passes(
    guide: dict[str, types.ModuleType], module: str, function: str, request: pytest.FixtureRequest
) -> None:
    test: Callable[..., None] = getattr(guide[module], function)
    fixtures = inspect.signature(test).parameters
    test(**{name: request.getfixturevalue(name) for name in fixtures})


def sections() -> set[str]:
    """The names the guide's headings start with."""
    return set(HEADING.findall(GUIDE.read_text(encoding="utf-8")))


def hooks() -> list[str]:
    """Every hook exportd specifies."""
    return sorted(
        name
        for name, function in vars(hookspecs).items()
        if hasattr(function, f"{hookspecs.PROJECT}_spec")
    )


@pytest.mark.parametrize("hook", hooks())
def test_every_hook_is_documented(hook: str) -> None:
    assert hook in sections(), f"docs/plugins.md has no section for the hook {hook}"


@pytest.mark.parametrize("name", sorted(set(exportd.__all__) | set(api.__all__)))
def test_every_public_name_is_documented(name: str) -> None:
    assert name in sections(), f"docs/plugins.md has no section for {name}"


def test_the_plugin_api_module_exports_all_it_defines() -> None:
    defined = {
        name
        for name, value in vars(api).items()
        if isinstance(value, type) and value.__module__ == api.__name__ and name[0] != "_"
    }
    assert defined <= set(api.__all__)
    assert set(api.__all__) <= set(exportd.__all__)
    assert len(hooks()) >= 6
