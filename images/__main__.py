"""`python -m images [build|bases|verify|dockerfiles]`: see --help."""

import sys

from .cli import main

sys.exit(main())
