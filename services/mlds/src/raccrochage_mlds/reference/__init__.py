"""Reference data shipped with the service: the académie's directory of MLDS sites."""
