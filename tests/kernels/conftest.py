"""Shared set-up for the kernel tests: makes ``kernel_strategies`` importable."""

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
