"""`python -m loadtest.cli`: the `loadtest` command where no console script is installed
(worker pods, remote workers started by path)."""

import sys

from loadtest.cli.main import main

sys.exit(main())
