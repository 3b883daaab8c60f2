"""Entry points (FastStream app, HTTP API): not written yet (see docs/clause_sociale.md)."""
