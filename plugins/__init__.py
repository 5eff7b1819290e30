"""First-party cloudapi-gateway plugins, loaded through the same entry points as any other."""
