import sys

from musiccap.cli import main

sys.exit(main())
