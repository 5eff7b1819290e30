"""``python -m gateway``: the same command line as ``cloudapi-gateway``."""

import sys

from gateway.cli.main import main

sys.exit(main())
