"""`python -m storepulse.cli`: how the demo, the bench and the tests start storepulse commands."""

import sys

from storepulse.cli import main

sys.exit(main())
