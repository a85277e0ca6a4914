"""Base layer: settings, errors, logging, the database pool, the embedded server, identifiers; imports no other project package."""
