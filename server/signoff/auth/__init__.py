"""Who calls (authenticators) and what they may do (the rules table)."""
