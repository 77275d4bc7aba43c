"""The methods that turn an instance into a plan, and their registry by name."""
