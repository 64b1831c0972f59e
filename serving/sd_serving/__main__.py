import sys

from sd_serving.cli import main

sys.exit(main())
