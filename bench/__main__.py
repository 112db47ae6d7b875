"""`python -m bench [STUDY|report|check]`: see --help."""

import sys

from .cli import main

sys.exit(main())
