"""The examples of the seed issue: exact output shapes, and values against torch.nn."""
import numpy as np
import pytest
import torch

from convcore import nn

# (class name, constructor args, kwargs, input shape, output shape)
EXAMPLES = [
    ("ConvTranspose2d", (16, 33, 3), {"stride": 2}, (20, 16, 50, 100), (20, 33, 101, 201)),
    ("ConvTranspose2d", (16, 33, (3, 5)), {"stride": (2, 1), "padding": (4, 2)}, (20, 16, 50, 100), (20, 33, 93, 100)),
    ("ConvTranspose1d", (32, 16, 2), {}, (10, 32, 2), (10, 16, 3)),
    ("Conv2d", (16, 33, (3, 5)), {"stride": (2, 1), "padding": (4, 2), "dilation": (3, 1)}, (20, 16, 50, 100),
     (20, 33, 26, 100)),
    ("ConvTranspose2d", (3, 64, 3), {"stride": 2, "padding": 1}, (16, 3, 32, 32), (16, 64, 63, 63)),
]


def _torch_twin(module, name, args, kwargs):
    twin = getattr(torch.nn, name)(*args, **kwargs)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(module.weight))
        twin.bias.copy_(torch.from_numpy(module.bias))
    return twin


@pytest.mark.parametrize("name, args, kwargs, in_shape, out_shape", EXAMPLES)
def test_seed_example(name, args, kwargs, in_shape, out_shape):
    module = getattr(nn, name)(*args, **kwargs, seed=0)
    x = np.random.default_rng(1).standard_normal(in_shape, dtype=np.float32)
    y = module(x)
    assert y.shape == out_shape and y.dtype == np.float32
    with torch.no_grad():
        want = _torch_twin(module, name, args, kwargs)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_downsample_then_upsample_to_the_input_shape():
    x = np.random.default_rng(2).standard_normal((1, 16, 12, 12), dtype=np.float32)
    down = nn.Conv2d(16, 16, 3, stride=2, padding=1, seed=0)
    up = nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, seed=1)
    h = down(x)
    assert h.shape == (1, 16, 6, 6)
    y = up(h, output_size=x.shape)
    assert y.shape == (1, 16, 12, 12)
    assert up(h).shape == (1, 16, 11, 11)  # without output_size one row/column short
    with torch.no_grad():
        tdown = _torch_twin(down, "Conv2d", (16, 16, 3), {"stride": 2, "padding": 1})
        tup = _torch_twin(up, "ConvTranspose2d", (16, 16, 3), {"stride": 2, "padding": 1})
        th = tdown(torch.from_numpy(x))
        want = tup(th, output_size=x.shape).numpy()
    np.testing.assert_allclose(h, th.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
