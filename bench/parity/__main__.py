import sys
from pathlib import Path

from bench.parity.core import child_main, main

if len(sys.argv) == 4 and sys.argv[1] == "--child":
    sys.exit(child_main(Path(sys.argv[2]), sys.argv[3]))
sys.exit(main())
