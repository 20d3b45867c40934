"""The store: SQLAlchemy 2 models and a small repository API (runs, rounds, prompts, generations,
append-only reviewer labels, pairs, jobs), SQLite by default and PostgreSQL by URL.

Not written yet: this package is a placeholder for issue 5. Nothing imports it today.
"""
