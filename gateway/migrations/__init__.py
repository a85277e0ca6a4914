"""The gateway's own schema SQL and roles, and the code that applies them."""
