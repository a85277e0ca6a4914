"""The family diary: root query, types, per-request loaders with the scope check, SQL."""
