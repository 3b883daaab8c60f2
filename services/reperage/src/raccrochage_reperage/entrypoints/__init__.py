"""Where work enters repérage: NATS request/reply, HTTP, the CLI."""
