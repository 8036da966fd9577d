"""The engine: the only writer of the job store.

:mod:`~exportd.engine.lifecycle` decides how a job may change,
:mod:`~exportd.engine.store` records the changes (and the messages that announce
them) in SQLite, through :mod:`~exportd.engine.rows` (jobs as rows) and
:mod:`~exportd.engine.schema` (the file, its transactions and migrations).
"""
