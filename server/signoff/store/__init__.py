"""Durable storage: SQLAlchemy Core tables, transactions, migrations and the notify hub."""
