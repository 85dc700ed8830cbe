"""`python -m attribfast`: the same command line as the `attribfast` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
