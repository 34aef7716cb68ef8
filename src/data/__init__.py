"""Data preparation entry points (python -m src.data.<command>)."""
