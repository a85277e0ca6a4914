"""The school IT dashboard: queries, types, the per-request service, SQL."""
