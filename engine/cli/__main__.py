"""``python -m engine.cli``: the ``layerlab`` command."""

import sys

from engine.cli.main import main

sys.exit(main())
