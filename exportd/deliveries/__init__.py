"""Deliveries: sending finished exports on (by email, or a plugin's method) once their
job is done.  See :mod:`exportd.deliveries.service` and ``docs/delivery.md``."""
