"""Console entry points; each maps user mistakes to one line and exit code 2."""
