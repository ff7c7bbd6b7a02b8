"""``python -m agents.llm.embedded``: put the default weights in the cache (what ``make setup`` runs)."""

import logging
import sys

from agents.llm.base import BackendError
from agents.llm.embedded.weights import fetch_weights

logging.basicConfig(level=logging.INFO, format="%(message)s")  # the one-time conversion says what it does
try:
    for name, path in fetch_weights().items():
        print(f"{name}: {path}")
except BackendError as exc:
    print(f"agora: error: {exc}", file=sys.stderr)
    sys.exit(2)
