"""The asyncio client, source of the generated blocking one (see client.py)."""
