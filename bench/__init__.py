"""The side-by-side benchmark: the gateway, PostGraphile and the raw-SQL limit (`bench/run`)."""
