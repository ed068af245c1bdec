"""`python3 -m redqd_client ...` is `redqctl ...` (for a checkout not installed with pip)."""

import sys

from .cli import main

sys.exit(main())
