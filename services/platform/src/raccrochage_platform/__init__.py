"""Plumbing every Raccrochage service shares: settings, logs, database, broker, outbox, inbox, dead letters, health, the local rig."""
