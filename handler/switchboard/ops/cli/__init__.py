"""The `switchboard` command (main.py)."""
