"""Running methods side by side: the comparison, the target sweep, realized routing."""
