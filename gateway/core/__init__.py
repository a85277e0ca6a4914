"""Base layer: settings, errors, logging, the database pool, the embedded server and
identifiers; imports no other project package."""
