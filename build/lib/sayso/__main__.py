"""Allow `python -m sayso`."""

from sayso.cli import main

raise SystemExit(main())
