"""pyarrow.compute's functions, each made the first time it is used.

``import pyarrow.compute`` makes a Python wrapper (with its signature and its
documentation, scraped from the options' docstrings) for every one of the 280-odd
functions of Arrow's registry: 20-30 ms of every export's start-up, where a csv
export calls some twenty of them.  ``from exportd.plugins.formats import compute as
pc`` gives the same calls: ``pc.NAME(...)`` takes the arguments ``pyarrow.compute.NAME``
takes (the function's arguments, then its options, positionally or by keyword, or
``options=``) and calls the same registry function with the same options.

pyarrow's own array methods that compute (``Array.cast``, ``take``, ``fill_null``,
``filter``, ``dictionary_encode``, ``drop_null``...) import pyarrow.compute: code on
the path of every export calls these functions instead (:func:`cast`, :func:`take`,
:func:`fill_null`, or ``pc.NAME``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pyarrow import _compute

_RENAMED = {"and_": "and", "or_": "or"}
"""pyarrow.compute's names for the functions whose names are Python keywords."""


def cast(array: Any, target_type: Any, safe: bool = True) -> Any:
    """``array`` cast to ``target_type``, as ``Array.cast`` and ``pyarrow.compute.cast``
    do (checked for overflow and truncation unless ``safe`` is false)."""
    target = pa.lib.ensure_type(target_type)
    options = _compute.CastOptions.safe(target) if safe else _compute.CastOptions.unsafe(target)
    return _compute.call_function("cast", [array], options)


def take(data: Any, indices: Any) -> Any:
    """The values of ``data`` at ``indices``, as ``Array.take`` gives them."""
    return _compute.call_function("take", [data, indices], _compute.TakeOptions(boundscheck=True))


def fill_null(values: Any, fill_value: Any) -> Any:
    """``values`` with each null replaced by ``fill_value``, as ``Array.fill_null`` does."""
    if not isinstance(fill_value, pa.Array | pa.ChunkedArray | pa.Scalar):
        fill_value = pa.scalar(fill_value, type=values.type)
    elif values.type != fill_value.type:
        fill_value = pa.scalar(fill_value.as_py(), type=values.type)
    return _compute.call_function("coalesce", [values, fill_value])


def __getattr__(name: str) -> Any:
    """The wrapper of the registry's function ``name``, made once; or what else
    pyarrow.compute has from pyarrow._compute (the options' classes, ``call_function``)."""
    try:
        function = _compute.get_function(_RENAMED.get(name, name))
    except pa.ArrowKeyError:
        if name.startswith("_") or not hasattr(_compute, name):
            raise AttributeError(f"pyarrow.compute has no function {name!r}") from None
        return getattr(_compute, name)
    wrapper = _wrapper(name, function)
    globals()[name] = wrapper
    return wrapper


def _wrapper(name: str, function: Any) -> Callable[..., Any]:
    """What pyarrow.compute's generic wrapper of ``function`` does, without its signature
    and documentation: the first ``arity`` positional arguments are the function's
    (all of them for a function of any number), the others and the keywords its
    options'."""
    options_name = function._doc.options_class
    options_class = getattr(_compute, options_name) if options_name else None
    arity = function.arity

    def call(*args: Any, options: Any = None, memory_pool: Any = None, **kwargs: Any) -> Any:
        option_args: tuple[Any, ...] = ()
        if arity is not Ellipsis:
            if len(args) < arity:
                raise TypeError(f"{name} takes {arity} positional argument(s), got {len(args)}")
            args, option_args = args[:arity], args[arity:]
        if options_class is None:
            if option_args or kwargs or options is not None:
                raise TypeError(f"{name} takes {arity} argument(s) and no options")
        elif option_args or kwargs:
            if options is not None:
                raise TypeError(f"{name} called with both options and option arguments")
            options = options_class(*option_args, **kwargs)
        elif isinstance(options, dict):
            options = options_class(**options)
        elif options is not None and not isinstance(options, options_class):
            raise TypeError(f"{name} takes options of {options_class.__name__}, got {options!r}")
        return function.call(list(args), options, memory_pool)

    call.__name__ = call.__qualname__ = name
    return call
