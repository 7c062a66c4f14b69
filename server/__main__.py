"""``python -m server serve|db|token ...`` (the same as ``lossradar ...``)."""

import sys

from server.cli import main

sys.exit(main())
