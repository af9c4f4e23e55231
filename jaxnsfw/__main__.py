import sys

from jaxnsfw.cli import main

sys.exit(main())
