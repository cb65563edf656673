import sys

from huma_rt.cli import main

sys.exit(main())
