"""What identity keeps in the database: accounts, sessions, clients, matching, throttle, audit."""
