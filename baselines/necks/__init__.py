"""Feature-pyramid necks that replace torchvision's FPN (HS-FPN, :mod:`.hs_fpn`)."""
