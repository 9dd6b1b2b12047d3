"""Store: SQLite schemas and queries shared by hub and agent."""
