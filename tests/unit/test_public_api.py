"""The public plugin API, ``exportd`` itself: every type a plugin meets is importable from it.

A type that a hook or a descriptor's method takes or returns (or that such a type holds,
as a job snapshot holds its parts) must be in ``exportd.__all__``, so that a plugin never
imports from exportd's internals to annotate its code.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

import exportd
from exportd.http.context import HttpApi
from exportd.plugins import hookspecs

DESCRIPTORS = (
    exportd.Source,
    exportd.Format,
    exportd.RowWriter,
    exportd.Storage,
    exportd.DeliveryMethod,
)


def hooks() -> list[Callable[..., Any]]:
    """Every hook specification."""
    return [
        function
        for name, function in vars(hookspecs).items()
        if name.startswith(f"{hookspecs.PROJECT}_") and callable(function)
    ]


def signatures() -> Iterator[Callable[..., Any]]:
    """Every hook and every public method of a descriptor."""
    yield from hooks()
    for descriptor in DESCRIPTORS:
        for name, method in inspect.getmembers(descriptor, inspect.isfunction):
            if not name.startswith("_"):
                yield method


def exportd_types(hint: Any) -> Iterator[type]:
    """The classes of exportd that a type hint names, through unions, generics and the
    fields of Structs and dataclasses (not those of :class:`~exportd.Settings`, whose
    sections a plugin reads through it and never names)."""
    seen: set[Any] = set()
    pending = [hint]
    while pending:
        current = pending.pop()
        if isinstance(current, list):  # the parameters of a Callable
            pending.extend(current)
            continue
        if current in seen:
            continue
        seen.add(current)
        pending.extend(typing.get_args(current))
        if not isinstance(current, type) or not current.__module__.startswith("exportd"):
            continue
        yield current
        if current is exportd.Settings:
            continue
        if issubclass(current, msgspec.Struct) or hasattr(current, "__dataclass_fields__"):
            pending.extend(typing.get_type_hints(current).values())


def names_in(function: Callable[..., Any]) -> set[type]:
    # Litestar's route type holds no exportd type (and names some that it does not import).
    namespace = {**vars(exportd), "HttpApi": HttpApi, "ControllerRouterHandler": object}
    hints = typing.get_type_hints(function, localns=namespace)
    return {found for hint in hints.values() for found in exportd_types(hint)}


def test_every_type_of_a_hook_or_descriptor_signature_is_exported() -> None:
    missing = {
        f"{used.__module__}.{used.__qualname__} (in {function.__qualname__})"
        for function in signatures()
        for used in names_in(function)
        if getattr(exportd, used.__name__, None) is not used
    }
    assert not missing


def test_the_types_a_delivery_reads_are_exported() -> None:
    for name in ("JobSnapshot", "PartSnapshot", "FileInfo", "Delivery", "RequestFields"):
        assert name in exportd.__all__


def test_every_name_in_all_is_there() -> None:
    for name in exportd.__all__:
        assert getattr(exportd, name) is not None


def test_importing_exportd_does_not_load_the_http_framework() -> None:
    code = (
        "import sys, exportd; "
        "assert 'litestar' not in sys.modules, 'litestar'; "
        "assert 'exportd.http' not in sys.modules, 'exportd.http'; "
        "from exportd import HttpApi; "
        "assert HttpApi.__module__ == 'exportd.http.context'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_http_routes_are_typed() -> None:
    signature = inspect.signature(hookspecs.exportd_http_routes)
    assert signature.parameters["api"].annotation == "HttpApi"
    assert signature.return_annotation == "Iterable[ControllerRouterHandler]"
