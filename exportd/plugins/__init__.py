"""Hook specifications, the plugin manager and the built-in sources and formats."""
