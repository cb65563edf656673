import sys

from huma_rt.bench.cli import main

sys.exit(main())
