"""Readers: a split's files as read units of rows (parquet), and other layouts staged as parquet first."""
