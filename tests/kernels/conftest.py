import os
import sys

# tests/reference.py is imported as a top-level module
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
