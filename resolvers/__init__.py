"""GraphQL domains (diary, dashboard, analytics) over auth and gateway.core."""
