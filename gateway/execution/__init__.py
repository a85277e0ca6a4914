"""Executing GraphQL documents: parsing and limits, cost, the compiled executor, schema assembly."""
