"""Layer 0: what every other layer uses: exceptions, reading text files, process-wide settings."""
