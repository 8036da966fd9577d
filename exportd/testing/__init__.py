"""exportd's test kit for plugin authors: run exports, check the plugin contract, draw
hostile data.

Install it with ``pip install 'exportd[testing]'`` (it needs pytest and Hypothesis).
Its fixtures, ``exportd_demo``, ``exportd_plugins`` and ``exportd_service``, come with
exportd's pytest plugin (:mod:`exportd.pytest_plugin`), which pytest loads by itself::

    from exportd.testing import check_format, check_source, run_export

See "Testing a plugin" in the plugin guide (docs/plugins.md).
"""

from exportd.data.demo import DemoData, DemoSummary, generate_demo_data, load_demo_data
from exportd.kernel.datastores import open_store as data_store
from exportd.testing.checks import check_format, check_source
from exportd.testing.exports import (
    GENERATED_AT,
    ExportedFile,
    PluginSet,
    export_info,
    run_export,
    write_export,
)
from exportd.testing.service import Service, serve
from exportd.testing.strategies import (
    HOSTILE_FRAGMENTS,
    LONE_SURROGATES,
    encodable,
    hostile_cells,
    hostile_columns,
    hostile_rows,
    hostile_text,
    utc_datetimes,
)

__all__ = [
    "GENERATED_AT",
    "HOSTILE_FRAGMENTS",
    "LONE_SURROGATES",
    "DemoData",
    "DemoSummary",
    "ExportedFile",
    "PluginSet",
    "Service",
    "check_format",
    "check_source",
    "data_store",
    "encodable",
    "export_info",
    "generate_demo_data",
    "hostile_cells",
    "hostile_columns",
    "hostile_rows",
    "hostile_text",
    "load_demo_data",
    "run_export",
    "serve",
    "utc_datetimes",
    "write_export",
]
