"""school-gateway: a GraphQL gateway over a regional school journal database."""
