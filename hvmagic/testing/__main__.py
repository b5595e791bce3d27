"""``python -m hvmagic.testing --stdio``: same as ``python -m hvmagic.testing.guest``."""

import sys

from hvmagic.testing.guest import main

sys.exit(main())
