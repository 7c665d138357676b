"""Small helpers every layer may use: atomic files, redaction of secrets, sizes for people, crash-test hooks."""
