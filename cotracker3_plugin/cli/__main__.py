"""``python -m cotracker3_plugin.cli ...`` runs the ``cotracker3`` command."""

from cotracker3_plugin.cli import main

raise SystemExit(main())
