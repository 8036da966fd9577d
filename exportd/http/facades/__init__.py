"""HTTP APIs compatible with the systems exportd replaces (the seed pages in
``../shared/seeds``), each a plugin on the ``exportd_http_routes`` hook: a client
written against one of them works against exportd with only its base URL and
credentials changed."""
