//! Database connections for every service: SQLite by default, PostgreSQL when DATABASE_URL says so.
