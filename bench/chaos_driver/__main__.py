"""`python -m bench.chaos_driver` (what `bench/chaos` runs)."""

from bench.chaos_driver.cli import main

raise SystemExit(main())
