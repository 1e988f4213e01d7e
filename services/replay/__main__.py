"""Command line: `python -m services.replay {sample,export,engine} …` — see `--help` of each."""

import sys

from services.replay.cli import main

sys.exit(main())
