import sys

from cygrad.cli import main

sys.exit(main())
