"""PostgreSQL access: engine and sessions, SQLAlchemy models, and query functions that never commit."""
