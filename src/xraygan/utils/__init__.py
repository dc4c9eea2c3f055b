"""Small shared helpers: atomic file writes, output folders, devices and seeds."""
