"""The command lines: `solve.py` (main), its `profile` and `sweep` subcommands, shared argument parsing."""
