"""Export tests: the helpers next to them (cut cases, isolated loading) are importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
