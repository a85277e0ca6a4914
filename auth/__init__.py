"""Identity: tokens, the viewer and their scope, permission classes."""
