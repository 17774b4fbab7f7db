"""`python -m arcoseg …` runs the command line."""

from arcoseg.cli import main

raise SystemExit(main())
