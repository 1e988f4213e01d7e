"""`python -m services.client …`: the `cxpt` command line (services/client/cli.py)."""

from services.client.cli import main

raise SystemExit(main())
