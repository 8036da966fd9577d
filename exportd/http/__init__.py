"""exportd's HTTP API: the native API (``/v1``), signed downloads, health, and the
routes plugins add (the seed-compatible APIs among them).

It runs in the engine's process and event loop (``exportd serve``, ``exportd
engine``) and acts through the engine's Python API.
"""
