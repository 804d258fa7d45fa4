"""Layer 7: the `cellpkpd` command; it only parses arguments and calls the library."""
