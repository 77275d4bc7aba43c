#!/usr/bin/env python3
"""The planner's command line; `models/cli/main.py` holds it (`python solve.py --help`)."""

import sys

from models.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
