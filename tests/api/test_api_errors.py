"""Every malformed call: torch rejects it too, convcore raises ValueError/TypeError, and its message
is libtorch's first line where torch has a message of its own (RuntimeError/ValueError), else names
the argument."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from apiutil import NDIM, OPS, TRANSPOSED, convcore_call, first_line, torch_call

SAME = "torch"  # convcore's message == the first line of torch's

# (op, input shape, weight shape, bias shape or None, kwargs, SAME or a regex convcore's message matches)
CASES = {
    # input rank
    "conv2d-input-2d": ("conv2d", (5, 5), (3, 2, 3, 3), None, {}, SAME),
    "conv2d-input-5d": ("conv2d", (1, 1, 2, 5, 5), (3, 2, 3, 3), None, {}, SAME),
    "conv1d-input-4d": ("conv1d", (1, 2, 5, 5), (3, 2, 3), None, {}, SAME),
    "conv1d-input-1d": ("conv1d", (5,), (3, 2, 3), None, {}, SAME),
    "convT2d-input-2d": ("conv_transpose2d", (2, 5), (2, 3, 3, 3), None, {}, SAME),
    "convT1d-input-4d": ("conv_transpose1d", (1, 2, 5, 5), (2, 3, 3), None, {}, SAME),
    "conv2d-input-0d": ("conv2d", (), (3, 2, 3, 3), None, {}, SAME),
    # weight rank (torch's messages talk about its own internals here)
    "conv2d-weight-3d": ("conv2d", (1, 2, 5, 5), (3, 2, 3), None, {}, r"\bweight\b.*\[3, 2, 3\]"),
    "conv2d-weight-5d": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3, 1), None, {}, r"\bweight\b"),
    "conv1d-weight-4d": ("conv1d", (1, 2, 5), (3, 2, 3, 3), None, {}, r"\bweight\b.*\[3, 2, 3, 3\]"),
    "conv1d-weight-2d": ("conv1d", (1, 2, 5), (3, 2), None, {}, r"\bweight\b"),
    "convT2d-weight-3d": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3), None, {}, r"\bweight\b"),
    "convT1d-weight-4d": ("conv_transpose1d", (1, 2, 5), (2, 3, 3, 3), None, {}, r"\bweight\b"),
    # empty kernels / weights
    "conv2d-kernel-0": ("conv2d", (1, 2, 5, 5), (3, 2, 0, 3), None, {}, SAME),
    "conv2d-no-outputs": ("conv2d", (1, 2, 5, 5), (0, 2, 3, 3), None, {}, SAME),
    "convT2d-kernel-0": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 0), None, {}, SAME),
    "convT2d-no-outputs": ("conv_transpose2d", (1, 2, 5, 5), (2, 0, 3, 3), None, {}, SAME),
    # channels
    "conv2d-channels": ("conv2d", (1, 4, 5, 5), (4, 2, 3, 3), None, {}, SAME),
    "conv2d-channels-unbatched": ("conv2d", (4, 5, 5), (4, 2, 3, 3), None, {}, SAME),
    "conv1d-channels": ("conv1d", (1, 3, 5), (4, 2, 3), None, {}, SAME),
    "convT2d-channels": ("conv_transpose2d", (1, 2, 5, 5), (3, 3, 3, 3), None, {}, SAME),
    "convT1d-channels-unbatched": ("conv_transpose1d", (2, 5), (3, 3, 3), None, {}, SAME),
    "conv2d-channels-groups": ("conv2d", (1, 4, 5, 5), (4, 1, 3, 3), None, {"groups": 2}, SAME),
    # groups
    "conv2d-groups-0": ("conv2d", (1, 4, 5, 5), (4, 4, 3, 3), None, {"groups": 0}, SAME),
    "conv2d-groups-neg": ("conv2d", (1, 4, 5, 5), (4, 4, 3, 3), None, {"groups": -2}, SAME),
    "conv2d-groups-not-dividing": ("conv2d", (1, 4, 5, 5), (3, 2, 3, 3), None, {"groups": 2}, SAME),
    "conv2d-groups-too-many": ("conv2d", (1, 6, 5, 5), (3, 2, 3, 3), None, {"groups": 4}, SAME),
    "conv1d-groups-not-dividing": ("conv1d", (1, 4, 5), (3, 2, 3), None, {"groups": 2}, SAME),
    "convT2d-groups-0": ("conv_transpose2d", (1, 4, 5, 5), (4, 2, 3, 3), None, {"groups": 0}, SAME),
    "convT2d-groups-not-dividing": ("conv_transpose2d", (1, 3, 5, 5), (3, 2, 3, 3), None, {"groups": 2}, SAME),
    "convT1d-groups-neg": ("conv_transpose1d", (1, 4, 5), (4, 2, 3), None, {"groups": -1}, SAME),
    "conv2d-groups-float": ("conv2d", (1, 4, 5, 5), (4, 2, 3, 3), None, {"groups": 2.0}, r"'groups'"),
    "conv2d-groups-bool": ("conv2d", (1, 4, 5, 5), (4, 4, 3, 3), None, {"groups": True}, r"'groups'"),
    "conv2d-groups-none": ("conv2d", (1, 4, 5, 5), (4, 4, 3, 3), None, {"groups": None}, r"'groups'"),
    "conv2d-groups-str": ("conv2d", (1, 4, 5, 5), (4, 4, 3, 3), None, {"groups": "2"}, r"'groups'"),
    "convT2d-groups-float": ("conv_transpose2d", (1, 4, 5, 5), (4, 2, 3, 3), None, {"groups": 1.5}, r"'groups'"),
    # stride / dilation / padding values
    "conv2d-stride-0": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"stride": 0}, SAME),
    "conv2d-stride-neg": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"stride": (1, -1)}, SAME),
    "conv1d-stride-0": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"stride": 0}, SAME),
    "convT2d-stride-0": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None, {"stride": (0, 1)}, SAME),
    "convT1d-stride-neg": ("conv_transpose1d", (1, 2, 5), (2, 3, 3), None, {"stride": -2}, SAME),
    "conv2d-dilation-0": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": 0}, SAME),
    "conv2d-dilation-0-w": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": (1, 0)}, SAME),
    "conv2d-dilation-neg": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": -1}, SAME),
    "conv2d-dilation-neg-h": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": (-1, 1)}, SAME),
    "conv1d-dilation-0": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"dilation": 0}, SAME),
    "conv1d-dilation-neg": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"dilation": -1}, SAME),
    "convT2d-dilation-0": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None, {"dilation": 0}, SAME),
    "convT2d-dilation-neg": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None, {"dilation": -1}, SAME),
    "convT1d-dilation-0": ("conv_transpose1d", (1, 2, 5), (2, 3, 3), None, {"dilation": 0}, SAME),
    "conv2d-padding-neg": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": -1}, SAME),
    "conv2d-padding-neg-w": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": (0, -1)}, SAME),
    "conv1d-padding-neg": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"padding": -2}, SAME),
    "convT2d-padding-neg": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None, {"padding": -1}, SAME),
    "convT2d-output-padding-neg": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                   {"output_padding": -1}, SAME),
    # output_padding too large: must be < stride or < dilation
    "convT2d-output-padding-1": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None, {"output_padding": 1}, SAME),
    "convT2d-output-padding-w": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                 {"output_padding": (0, 2), "stride": 2}, SAME),
    "convT2d-output-padding-dil": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                   {"output_padding": (2, 0), "stride": 2, "dilation": 2}, SAME),
    "convT1d-output-padding": ("conv_transpose1d", (1, 2, 5), (2, 3, 3), None,
                               {"output_padding": 2, "stride": 2}, SAME),
    # kernel larger than the padded input
    "conv2d-kernel-too-big": ("conv2d", (1, 2, 5, 5), (3, 2, 6, 3), None, {}, SAME),
    "conv2d-dilated-too-big": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": 3}, SAME),
    "conv2d-valid-too-big": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": "valid", "dilation": 3}, SAME),
    "conv1d-kernel-too-big": ("conv1d", (1, 2, 5), (3, 2, 9), None, {"padding": 1}, SAME),
    "conv2d-kernel-too-big-unbatched": ("conv2d", (2, 2, 2), (3, 2, 3, 3), None, {}, SAME),
    # non-positive transposed output size
    "convT2d-output-negative": ("conv_transpose2d", (1, 2, 1, 5), (2, 3, 3, 3), None, {"padding": 2}, SAME),
    "convT1d-output-zero": ("conv_transpose1d", (1, 2, 2), (2, 3, 1), None, {"padding": 1}, SAME),
    "convT1d-output-negative": ("conv_transpose1d", (1, 2, 1), (2, 3, 1), None, {"padding": 1}, SAME),
    "convT2d-output-zero-unbatched": ("conv_transpose2d", (2, 2, 2), (2, 3, 1, 1), None, {"padding": (0, 1)}, SAME),
    # empty spatial dimensions
    "conv2d-empty-height": ("conv2d", (1, 2, 0, 5), (3, 2, 3, 3), None, {"padding": 2}, SAME),
    "conv2d-empty-height-1x1": ("conv2d", (1, 2, 0, 5), (3, 2, 1, 1), None, {}, SAME),
    "conv1d-empty-length": ("conv1d", (1, 2, 0), (3, 2, 1), None, {}, SAME),
    "convT2d-empty-height": ("conv_transpose2d", (1, 2, 0, 5), (2, 3, 3, 3), None, {}, SAME),
    # tuple lengths
    "conv2d-stride-3": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"stride": (1, 1, 1)}, SAME),
    "conv2d-padding-3": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": [1, 1, 1]}, SAME),
    "conv2d-dilation-empty": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": ()}, SAME),
    "conv1d-stride-2": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"stride": (1, 1)}, SAME),
    "convT2d-output-padding-3": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                 {"output_padding": (0, 0, 0)}, SAME),
    "convT1d-padding-2": ("conv_transpose1d", (1, 2, 5), (2, 3, 3), None, {"padding": (1, 1)}, SAME),
    # types where an int belongs
    "conv2d-stride-float": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"stride": 1.0}, r"'stride'"),
    "conv2d-stride-float-item": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"stride": (1, 1.0)}, r"'stride'"),
    "conv2d-padding-float": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": 1.0}, r"'padding'"),
    "conv2d-dilation-float": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": 1.5}, r"'dilation'"),
    "conv1d-stride-none": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"stride": None}, r"'stride'"),
    "conv2d-padding-none": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": None}, r"'padding'"),
    "conv2d-dilation-none": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": None}, r"'dilation'"),
    "convT2d-output-padding-none": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                    {"output_padding": None}, r"'output_padding'"),
    "convT2d-output-padding-float": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                     {"output_padding": 0.0}, r"'output_padding'"),
    "convT2d-stride-bool": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None, {"stride": True}, r"'stride'"),
    "convT1d-dilation-str": ("conv_transpose1d", (1, 2, 5), (2, 3, 3), None, {"dilation": "1"}, r"'dilation'"),
    "convT2d-padding-same": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None, {"padding": "same"}, SAME),
    "convT1d-padding-valid": ("conv_transpose1d", (1, 2, 5), (2, 3, 3), None, {"padding": "valid"}, r"'padding'"),
    # padding strings
    "conv2d-padding-full": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": "full"}, SAME),
    "conv2d-padding-SAME": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": "SAME"}, SAME),
    "conv1d-padding-circular": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"padding": "circular"}, SAME),
    "conv2d-same-strided": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": "same", "stride": 2}, SAME),
    "conv2d-same-strided-w": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None,
                              {"padding": "same", "stride": (1, 2)}, SAME),
    "conv1d-same-strided": ("conv1d", (1, 2, 5), (3, 2, 3), None, {"padding": "same", "stride": 3}, SAME),
    # bias
    "conv2d-bias-length": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), (2,), {}, SAME),
    "conv2d-bias-2d": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), (3, 1), {}, SAME),
    "conv2d-bias-scalar": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), (), {}, SAME),
    "conv1d-bias-length": ("conv1d", (1, 2, 5), (3, 2, 3), (4,), {}, SAME),
    "convT2d-bias-length": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), (2,), {}, SAME),
    "convT2d-bias-groups": ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3), (3,), {"groups": 2}, SAME),
    "convT1d-bias-2d": ("conv_transpose1d", (1, 2, 5), (2, 3, 3), (1, 3), {}, SAME),
    # padding modes
    "conv2d-mode-unknown": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None,
                            {"padding": 1, "padding_mode": "mirror"}, r"^padding_mode must be one of .*'mirror'"),
    "conv2d-mode-none": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None,
                         {"padding": 1, "padding_mode": None}, r"padding_mode"),
    "conv2d-reflect-too-wide": ("conv2d", (1, 2, 3, 3), (3, 2, 3, 3), None,
                                {"padding": 3, "padding_mode": "reflect"}, SAME),
    "conv2d-reflect-too-wide-w": ("conv2d", (1, 2, 5, 3), (3, 2, 3, 3), None,
                                  {"padding": (0, 3), "padding_mode": "reflect"}, SAME),
    "conv2d-reflect-too-high": ("conv2d", (1, 2, 3, 5), (3, 2, 3, 3), None,
                                {"padding": (3, 0), "padding_mode": "reflect"}, SAME),
    "conv2d-reflect-too-high-unbatched": ("conv2d", (2, 3, 5), (3, 2, 3, 3), None,
                                          {"padding": (3, 1), "padding_mode": "reflect"}, SAME),
    "conv1d-reflect-too-wide": ("conv1d", (1, 2, 3), (3, 2, 3), None, {"padding": 3, "padding_mode": "reflect"}, SAME),
    "conv1d-reflect-same": ("conv1d", (1, 2, 2), (3, 2, 5), None,
                            {"padding": "same", "padding_mode": "reflect"}, SAME),
    "conv2d-circular-twice": ("conv2d", (1, 2, 3, 3), (3, 2, 3, 3), None,
                              {"padding": 4, "padding_mode": "circular"}, SAME),
    "conv1d-circular-twice": ("conv1d", (2, 3), (3, 2, 3), None, {"padding": 4, "padding_mode": "circular"}, SAME),
    "conv2d-replicate-kernel-too-big": ("conv2d", (1, 2, 2, 2), (3, 2, 5, 5), None,
                                        {"padding": 1, "padding_mode": "replicate"}, SAME),
    # reflect/replicate: every non-batch dimension must be non-empty (torch's F.pad rule)
    "conv2d-replicate-empty": ("conv2d", (1, 2, 0, 5), (3, 2, 3, 3), None,
                               {"padding": 1, "padding_mode": "replicate"}, SAME),
    "conv2d-reflect-empty": ("conv2d", (1, 2, 0, 5), (3, 2, 3, 3), None,
                             {"padding": 1, "padding_mode": "reflect"}, SAME),
    "conv1d-replicate-empty": ("conv1d", (1, 2, 0), (3, 2, 3), None,
                               {"padding": 1, "padding_mode": "replicate"}, SAME),
    "conv2d-reflect-empty-unbatched": ("conv2d", (2, 0, 5), (3, 2, 3, 3), None,
                                       {"padding": 1, "padding_mode": "reflect"}, SAME),
    "conv2d-reflect-no-channels": ("conv2d", (2, 0, 5, 5), (4, 0, 3, 3), None,
                                   {"padding": 1, "padding_mode": "reflect"}, SAME),
    "conv2d-replicate-no-channels": ("conv2d", (2, 0, 5, 5), (4, 0, 3, 3), None,
                                     {"padding": 1, "padding_mode": "replicate"}, SAME),
    "conv1d-reflect-no-channels-unbatched": ("conv1d", (0, 5), (4, 0, 3), None,
                                             {"padding": 1, "padding_mode": "reflect"}, SAME),
    "conv2d-circular-empty": ("conv2d", (1, 2, 0, 5), (3, 2, 3, 3), None,
                              {"padding": 1, "padding_mode": "circular"}, SAME),
    # with a padding mode torch pads first (F.pad), then checks the convolution on the padded input
    "conv2d-reflect-channels": ("conv2d", (1, 3, 3, 3), (3, 2, 3, 3), None,
                                {"padding": 1, "padding_mode": "reflect"}, SAME),
    "conv2d-replicate-negative-too-small": ("conv2d", (1, 2, 3, 3), (3, 2, 3, 3), None,
                                            {"padding": -1, "padding_mode": "replicate"}, SAME),
    "order-reflect-pad-before-bias": ("conv2d", (1, 2, 3, 3), (3, 2, 3, 3), (2,),
                                      {"padding": 5, "padding_mode": "reflect"}, SAME),
    "order-reflect-pad-before-channels": ("conv2d", (1, 3, 3, 3), (3, 2, 3, 3), None,
                                          {"padding": 3, "padding_mode": "reflect"}, SAME),
    # torch's check order where two arguments are wrong
    "order-groups-before-stride": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"groups": 0, "stride": 0}, SAME),
    "order-groups-before-padding": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"groups": 0, "padding": -1}, SAME),
    "order-groups-before-tuple": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None,
                                  {"groups": 0, "stride": (1, 1, 1)}, SAME),
    "order-groups-before-same": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None,
                                 {"groups": 0, "padding": "same", "stride": 2}, SAME),
    "order-convT-groups-before-stride": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                         {"groups": 0, "stride": 0}, SAME),
    "order-padding-before-stride": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"padding": -1, "stride": 0}, SAME),
    "order-stride-before-dilation": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None, {"dilation": 0, "stride": 0}, SAME),
    "order-channels-before-dilation-0": ("conv2d", (1, 3, 5, 5), (3, 2, 3, 3), None, {"dilation": 0}, SAME),
    "order-weight-groups-before-dilation-0": ("conv2d", (1, 2, 5, 5), (3, 2, 3, 3), None,
                                              {"dilation": 0, "groups": 2}, SAME),
    "order-convT-channels-before-dilation-0": ("conv_transpose2d", (1, 3, 5, 5), (2, 3, 3, 3), None,
                                               {"dilation": 0}, SAME),
    "order-output-padding-before-stride": ("conv_transpose2d", (1, 2, 5, 5), (2, 3, 3, 3), None,
                                           {"output_padding": -1, "stride": 0}, SAME),
    # libtorch's transposed backend narrows stride, dilation, padding and output_padding to C ints
    "convT2d-stride-2**31": ("conv_transpose2d", (1, 1, 1, 1), (1, 1, 1, 1), None, {"stride": 2**31}, SAME),
    "convT1d-stride-2**32": ("conv_transpose1d", (1, 1, 3), (1, 1, 2), None, {"stride": 2**32}, SAME),
    "convT2d-dilation-2**31": ("conv_transpose2d", (1, 1, 1, 1), (1, 1, 1, 1), None, {"dilation": 2**31}, SAME),
    "convT2d-output-padding-vs-wrapped-stride": ("conv_transpose2d", (1, 1, 1, 1), (1, 1, 1, 1), None,
                                                 {"stride": 2**32 + 1, "output_padding": 1}, SAME),
    "convT1d-dilated-kernel-wraps": ("conv_transpose1d", (1, 1, 1), (1, 1, 2), None, {"dilation": 2**31 - 1}, SAME),
    "convT2d-dilated-kernel-wraps": ("conv_transpose2d", (1, 1, 1, 1), (1, 1, 3, 3), None, {"dilation": 2**30}, SAME),
    "order-channels-before-bias": ("conv2d", (1, 3, 5, 5), (3, 2, 3, 3), (5,), {}, SAME),
    "order-bias-before-kernel-size": ("conv2d", (1, 2, 5, 5), (3, 2, 7, 3), (2,), {}, SAME),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_malformed_call(case):
    op, xshape, wshape, bshape, kwargs, expect = case
    x, w = np.ones(xshape), np.ones(wshape)
    b = None if bshape is None else np.ones(bshape)
    with pytest.raises((RuntimeError, ValueError, TypeError)) as torch_exc:  # pins torch: the call is malformed
        torch_call(op, x, w, b, **kwargs)
    with pytest.raises((ValueError, TypeError)) as exc:
        convcore_call(op, x, w, b, **kwargs)
    if expect == SAME:
        assert str(exc.value) == first_line(torch_exc.value)
    else:
        assert re.search(expect, str(exc.value)), str(exc.value)


def test_huge_stride_over_one_input_pixel_matches_torch():
    """A stride that cannot step anywhere (one input pixel) never reaches the phase kernels, whose
    tables are sized by the stride; torch accepts it, so does convcore, with torch's values."""
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 1, 1)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(2)
    for kwargs in ({"stride": 2**31 - 1}, {"stride": (2**31 - 1, 1), "padding": (1, 0)}):
        np.testing.assert_allclose(convcore_call("conv_transpose2d", x, w, b, **kwargs),
                                   torch_call("conv_transpose2d", x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    # two input pixels, a stride past the output (padding crops it): col2im, no phase tables
    x = rng.standard_normal((1, 3, 2, 2))
    for kwargs in ({"stride": 1000, "padding": 499}, {"stride": (3, 2**30), "padding": (0, 2**29)}):
        np.testing.assert_allclose(convcore_call("conv_transpose2d", x, w, b, **kwargs),
                                   torch_call("conv_transpose2d", x, w, b, **kwargs), rtol=1e-12, atol=1e-12)


def test_empty_batch_with_negative_output_size():
    # torch fails with an internal reshape error here; convcore says what is wrong
    x, w = np.ones((0, 2, 1, 1)), np.ones((2, 3, 1, 1))
    with pytest.raises(RuntimeError):
        torch_call("conv_transpose2d", x, w, padding=1)
    with pytest.raises(ValueError, match=re.escape("Calculated output size per channel: (-1 x -1)")):
        convcore_call("conv_transpose2d", x, w, padding=1)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d", "conv1d"])
@pytest.mark.parametrize("which", ["input", "weight", "bias"])
def test_non_array_operands(op, which):
    operands = {"input": np.ones((1, 2, 5, 5)[: 3 if op == "conv1d" else 4]),
                "weight": np.ones((2, 2, 3, 3)[: 3 if op == "conv1d" else 4]),
                "bias": np.ones(2)}
    for bad in ("abc", [[1.0], [1.0, 2.0]], object()):
        operands[which] = bad
        with pytest.raises(TypeError, match=f"'{which}'"):
            convcore_call(op, operands["input"], operands["weight"], operands["bias"])
    if which != "bias":
        operands[which] = None
        with pytest.raises(TypeError, match=f"'{which}'"):
            convcore_call(op, operands["input"], operands["weight"], operands["bias"])


def test_transposed_weight_layout_in_message():
    # a conv weight passed to a transposed op: the layout names are part of the message
    with pytest.raises(ValueError, match=re.escape("(in_channels, out_channels/groups, *kernel_size)")):
        convcore_call("conv_transpose2d", np.ones((1, 2, 5, 5)), np.ones((2, 3, 3)))


@st.composite
def any_calls(draw):
    """Calls with small, often invalid, sizes and arguments."""
    op = draw(st.sampled_from(OPS))
    nd = NDIM[op]
    small = st.integers(-1, 3)
    maybe_tuple = lambda s: st.one_of(s, st.tuples(*[s] * nd))  # noqa: E731
    x_ndim = draw(st.sampled_from([nd + 2, nd + 2, nd + 1, nd, nd + 3]))
    x_shape = tuple(draw(st.lists(st.integers(0, 5), min_size=x_ndim, max_size=x_ndim)))
    w_ndim = draw(st.sampled_from([nd + 2, nd + 2, nd + 2, nd + 1]))
    w_shape = tuple(draw(st.lists(st.integers(0, 4), min_size=w_ndim, max_size=w_ndim)))
    b_shape = draw(st.one_of(st.none(), st.tuples(st.integers(0, 6))))
    kwargs = {"stride": draw(maybe_tuple(small)), "dilation": draw(maybe_tuple(small)),
              "groups": draw(st.integers(-1, 3)), "padding": draw(maybe_tuple(small))}
    if TRANSPOSED[op]:
        kwargs["output_padding"] = draw(maybe_tuple(small))
    else:
        if draw(st.booleans()):
            kwargs["padding"] = draw(st.sampled_from(["same", "valid"]))
        kwargs["padding_mode"] = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    return op, x_shape, w_shape, b_shape, kwargs


@given(call=any_calls())
def test_accepts_exactly_what_torch_accepts(call):
    op, x_shape, w_shape, b_shape, kwargs = call
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = None if b_shape is None else rng.standard_normal(b_shape)
    try:
        want = torch_call(op, x, w, b, **kwargs)
    except (RuntimeError, ValueError, TypeError, IndexError):
        with pytest.raises((ValueError, TypeError)):
            convcore_call(op, x, w, b, **kwargs)
        return
    got = convcore_call(op, x, w, b, **kwargs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
