"""``python -m llm_surgeon``: the command line (also under ``torchrun ... -m llm_surgeon``)."""

import sys

from llm_surgeon.cli import main

sys.exit(main())
