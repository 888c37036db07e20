"""``python -m app.cli``: the ``syncgate`` command."""

import sys

from app.cli.main import main

sys.exit(main())
