"""`python -m bench.driver` (what `bench/run` runs)."""

from bench.driver.cli import main

raise SystemExit(main())
