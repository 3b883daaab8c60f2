"""Entry points (FastStream app, HTTP API, CLI): not written yet, see docs/mlds.md."""
