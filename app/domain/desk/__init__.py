"""The desk: the web front-end served at /desk, and its cookie sessions over the public API."""
