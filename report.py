"""Turn sweep directories into the paper's tables and plots: ``python report.py outputs/multirun/<date>/<time>``."""

import sys

from labelsmooth.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
