"""Telemetry: metrics, structured logs and traces. Imported by api/ and services/; imports
nothing of theirs."""
