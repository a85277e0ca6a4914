"""bench/push: the change feed's delivery under thousands of SSE subscribers."""
