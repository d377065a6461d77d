"""maintd."""
