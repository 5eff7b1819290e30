"""Storage target plugins."""
