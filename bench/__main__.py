"""`python -m bench [study|report|reliability|rollout|workers|check]`: see --help."""

import sys

from .cli import main

sys.exit(main())
