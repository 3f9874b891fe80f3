"""``python -m pipeline.cli``: the ``tocsin`` command."""

import sys

from pipeline.cli.main import main

sys.exit(main())
