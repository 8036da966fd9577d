"""The embedded data store (data.db): its schema and demo data."""
