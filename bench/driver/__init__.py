"""The driver behind `bench/run`: install, seed, start the targets, check, measure, report."""
