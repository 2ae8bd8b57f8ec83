"""Installs the fault of ``$PRISME_KEYS_TEST_FAULT`` in a test subprocess (see tests/faults.py)."""

import os
import sys

if os.environ.get("PRISME_KEYS_TEST_FAULT"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import faults

    faults.install_from_env()
    del sys.path[0]
