"""The pure domain and the use cases in process (SQLite, or PostgreSQL when it runs), with an
injected clock: no server, no network."""
