import sys

from bench.report.build import main

sys.exit(main())
