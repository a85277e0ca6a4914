"""Sign-in flows over HTTP: ESIA, school passwords, sessions, machine clients, pages."""
