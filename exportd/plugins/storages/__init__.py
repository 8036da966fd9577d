"""Built-in storages: local (a directory under EXPORTD_HOME)."""
