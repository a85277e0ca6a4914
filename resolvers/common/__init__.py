"""What the domains share: types, field metadata, argument checks, the selection walker."""
