"""pitsync: warehouse history tables in DuckDB, answered at any moment in SQL."""

__version__ = "0.1.0"
