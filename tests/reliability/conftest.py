"""Makes this folder's helper module (relutil) importable under any pytest import mode."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
