"""`python -m sessions.oicp.simulator`: the command line is `cli`."""

import sys

from .cli import main

sys.exit(main())
