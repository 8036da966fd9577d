"""``python -m exportd``: the same as the ``exportd`` command."""

import sys

from exportd.cli import main

sys.exit(main())
