import sys

from nogilsafe.demo import main

sys.exit(main())
