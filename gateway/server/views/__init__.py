"""The HTTP views: images, image actions and ping."""
