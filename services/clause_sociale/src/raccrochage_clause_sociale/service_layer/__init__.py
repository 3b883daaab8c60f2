"""What each command and each event does, in one unit of work."""
