"""deal package."""
