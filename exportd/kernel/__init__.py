"""The export kernel: what every process that runs an export shares.

:mod:`~exportd.kernel.plan` checks a request against the plugins and plans its
parts, :mod:`~exportd.kernel.pipeline` runs one part (source, format, file) in
a :mod:`~exportd.kernel.workarea`; :mod:`~exportd.kernel.window`,
:mod:`~exportd.kernel.validation` and :mod:`~exportd.kernel.guard` are the
checks they rely on.  The worker, ``exportd export`` and the synchronous HTTP
export run them alike; the kernel imports no transport (bus, engine, HTTP).
"""
