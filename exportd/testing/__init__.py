"""exportd's test kit for plugin authors: draw hostile data, write it through a format.

Install it with ``pip install 'exportd[testing]'`` (it needs pytest and Hypothesis)::

    from exportd.testing import hostile_columns, hostile_rows, write_export
"""

from exportd.testing.exports import GENERATED_AT, export_info, write_export
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
    "encodable",
    "export_info",
    "hostile_cells",
    "hostile_columns",
    "hostile_rows",
    "hostile_text",
    "utc_datetimes",
    "write_export",
]
