import sys

from weightmom_sweeps.cli import main

sys.exit(main())
