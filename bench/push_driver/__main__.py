"""`python -m bench.push_driver` (what `bench/push` runs)."""

from bench.push_driver.cli import main

raise SystemExit(main())
