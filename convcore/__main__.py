"""``python -m convcore info|demo``."""
import argparse
import sys
import time

import numpy as np


def _demo():
    import convcore
    from convcore import nn

    rng = np.random.default_rng(0)
    randn = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    cases = [
        ("ConvTranspose2d(16, 33, 3, stride=2)", nn.ConvTranspose2d(16, 33, 3, stride=2, seed=0), randn(20, 16, 50, 100)),
        ("ConvTranspose2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2))",
         nn.ConvTranspose2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), seed=0), randn(20, 16, 50, 100)),
        ("ConvTranspose1d(32, 16, 2)", nn.ConvTranspose1d(32, 16, 2, seed=0), randn(10, 32, 2)),
        ("Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1))",
         nn.Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1), seed=0), randn(20, 16, 50, 100)),
        ("ConvTranspose2d(3, 64, 3, stride=2, padding=1)",
         nn.ConvTranspose2d(3, 64, 3, stride=2, padding=1, seed=0), randn(16, 3, 32, 32)),
    ]
    for label, module, x in cases:
        t0 = time.perf_counter()
        y = module(x)
        ms = (time.perf_counter() - t0) * 1e3
        print(f"{label:<72} {str(x.shape):>18} -> {str(y.shape):<18} {ms:7.2f} ms")
    x = randn(1, 16, 12, 12)
    down = nn.Conv2d(16, 16, 3, stride=2, padding=1, seed=0)
    up = nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, seed=1)
    h = down(x)
    y = up(h, output_size=x.shape)
    print(f"{'downsample then upsample(h, output_size=x.shape)':<72} {str(x.shape):>18} -> {str(h.shape)} -> {y.shape}")
    print(f"threads: {convcore.get_num_threads()}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convcore", description=__doc__)
    parser.add_argument("command", choices=["info", "demo"])
    args = parser.parse_args(argv)
    if args.command == "info":
        import convcore

        convcore.show_config()
    else:
        _demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
