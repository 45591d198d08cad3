"""Interop: agents in other languages, each its own OS process, against a live server."""
