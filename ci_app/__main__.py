import sys

from ci_app.cli import main

sys.exit(main())
