import sys

from qzoo.cli import main

sys.exit(main())
