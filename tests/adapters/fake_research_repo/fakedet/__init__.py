"""Stand-in detector package of the fake research repository (tests only)."""
