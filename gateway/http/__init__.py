"""GraphQL over HTTP: the protocol, the endpoint, the response cache, and uvicorn serving."""
