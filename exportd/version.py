"""exportd's version, in a module of its own so that any layer may read it without
importing the public plugin API (``exportd``), which reaches the HTTP API's types."""

__version__ = "0.1.0"
