"""Image action plugins."""
