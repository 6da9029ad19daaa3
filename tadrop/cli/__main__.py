"""``python -m tadrop.cli``: the ``tadrop`` command."""

import sys

from tadrop.cli import main

sys.exit(main())
