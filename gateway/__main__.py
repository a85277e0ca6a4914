"""`python -m gateway`: the `school-gateway` command (gateway.cli.main)."""

from gateway.cli.main import main

raise SystemExit(main())
