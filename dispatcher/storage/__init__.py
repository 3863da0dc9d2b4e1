"""Storage: SQLite (WAL) embedded by default, PostgreSQL for production and scale-out.

db.py           engines and sessions for either database
models.py       the tables, as typed SQLAlchemy 2 models
migrate.py      Alembic migrations (migrations/), configured in code
"""
