"""PSAD: reach every youth repérage hands over, hold an interview, get the youth into a solution."""
