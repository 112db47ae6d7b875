"""`python -m images [build|bases|verify]`: see --help."""

import sys

from .cli import main

sys.exit(main())
