import sys

from services.devtools.soak.cli import main

sys.exit(main())
