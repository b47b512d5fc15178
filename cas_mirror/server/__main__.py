"""`python -m cas_mirror.server`: the same as the `cas-server` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
