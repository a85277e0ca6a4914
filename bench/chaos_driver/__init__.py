"""PostgreSQL restarted and crashed under load (`bench/chaos`, issue 9)."""
