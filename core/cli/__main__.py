"""``python -m llm_surgeon.cli``: the command line."""

import sys

from llm_surgeon.cli import main

sys.exit(main())
