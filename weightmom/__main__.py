import sys

from weightmom.cli import main

sys.exit(main())
