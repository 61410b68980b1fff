"""Hubject's EVSE directory in the portal: the pull (services), what support adds to operators, the search."""
