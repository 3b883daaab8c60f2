"""Where messages and requests enter FOQUALE (FastStream app, HTTP API): not written yet."""
