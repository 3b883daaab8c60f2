"""The local rig: real NATS and PostgreSQL from PyPI wheels, and the services as supervised processes."""
