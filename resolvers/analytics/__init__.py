"""Regional analytics: aggregates only, through the analytics service and its SQL."""
