"""Label assigners that replace a torchvision detector's own matching (RFLA, :mod:`.rfla`)."""
