"""Allow ``python -m breastus.cli``."""

import sys

from breastus.cli._main import main

sys.exit(main())
