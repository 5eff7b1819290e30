"""Image catalog plugins."""
