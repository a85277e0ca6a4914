"""Tests through live servers, the CLI, sign-in redirects and database outages."""
