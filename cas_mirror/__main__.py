"""`python -m cas_mirror` runs cas-sync."""

import sys

from .cli import console

sys.exit(console())
