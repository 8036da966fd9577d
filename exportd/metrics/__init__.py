"""Prometheus metrics of exportd's processes (``docs/operations.md``, "Metrics").

:mod:`exportd.metrics.process` holds one process's registry and the families every kind
of process shares; the engine, the workers, the delivery service and the HTTP API define
their own families beside their code.  :mod:`exportd.metrics.listener` is the small HTTP
listener of ``exportd worker`` (``worker.metrics_listen``).  ``exportd export`` loads none
of it: prometheus_client is loaded only by the processes that serve metrics.
"""
