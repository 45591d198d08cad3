"""The blocking client, generated from _async (see _sync/client.py)."""
