"""Built-in formats: csv, xlsx, txt, html, json, json_bulk."""
