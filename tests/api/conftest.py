"""Makes this folder's helper module (apiutil) importable under any pytest import mode, and runs
torch (the oracle) on one thread: its intra-op pool spin-waits against convcore's OpenMP team and
makes small calls ~50x slower on a busy 2-core machine."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)
