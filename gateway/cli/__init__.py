"""The `school-gateway` command line: main.py parses, one module per command group."""
