"""`python -m gpuwizard` runs the command line."""

import sys

from gpuwizard.cli import main

sys.exit(main())
