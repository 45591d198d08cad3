"""The approvers' web console, served on the HTTP listener (docs/console.md)."""
