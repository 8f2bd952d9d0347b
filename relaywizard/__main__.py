"""`python -m relaywizard` runs the command line."""

from relaywizard.cli.main import main

raise SystemExit(main())
