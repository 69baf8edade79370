"""`python -m server` runs the `ywm` command line."""
import sys

from server.cli import main

sys.exit(main())
