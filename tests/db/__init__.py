"""Tests against the real PostgreSQL through the real app (ASGI transport)."""
