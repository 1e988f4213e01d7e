"""``python -m deploy.local start|stop|status|clean|env [--only …]``."""

from deploy.local.launcher import main

raise SystemExit(main())
