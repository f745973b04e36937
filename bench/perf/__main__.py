import sys

from bench.perf.core import main, worker_main

if len(sys.argv) == 3 and sys.argv[1] == "--worker":
    sys.exit(worker_main(sys.argv[2]))
sys.exit(main(sys.argv[1:]))
