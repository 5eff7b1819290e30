"""``python -m gateway``: the same CLI as ``cloudapi-gateway``."""

import sys

from gateway.cli import main

sys.exit(main())
