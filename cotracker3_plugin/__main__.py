import sys

from cotracker3_plugin.cli import main

sys.exit(main())
