"""``python -m runner_probe``."""

from runner_probe.cli import main

raise SystemExit(main())
