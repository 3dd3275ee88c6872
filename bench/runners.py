"""Zero-argument callables that run one case through convcore, torch or onnxruntime.

Each ``make_*`` binds the operands once (tensor wrapping, ONNX model building and session creation
happen here, not in the timed call) and returns a function giving the output as a numpy array.
Peers are optional: ``available(peer)`` says whether one can be imported.
"""
import importlib.util

import numpy as np

import convcore

PEERS = ("torch", "onnxruntime")
IMPLS = ("convcore",) + PEERS


def available(impl):
    if impl == "onnxruntime":  # the model is built with the onnx package
        return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    return importlib.util.find_spec(impl) is not None


def supports(impl, dtype):
    """onnxruntime has no float64 Conv/ConvTranspose kernel on the CPU."""
    return impl != "onnxruntime" or np.dtype(dtype) == np.float32


def set_threads(threads):
    """Same thread count for every implementation that is importable (onnxruntime takes it per
    session, see make_onnxruntime)."""
    convcore.set_num_threads(threads)
    if available("torch"):
        import torch

        torch.set_num_threads(threads)


def make(impl, case, x, w, b, threads):
    return _MAKERS[impl](case, x, w, b, threads)


def make_convcore(case, x, w, b, threads):
    fn = getattr(convcore, case.op)
    return lambda: fn(x, w, b, **case.kwargs)


def make_torch(case, x, w, b, threads):
    import torch

    fn = getattr(torch.nn.functional, case.op)
    xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))

    def run():
        with torch.inference_mode():
            return fn(xt, wt, bt, **case.kwargs).numpy()

    return run


def make_onnxruntime(case, x, w, b, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    pads = case.arg("padding", 0)
    attrs = dict(kernel_shape=list(w.shape[2:]), strides=case.arg("stride", 1), pads=pads + pads,
                 dilations=case.arg("dilation", 1), group=case.groups)
    if case.transposed:
        attrs["output_padding"] = case.arg("output_padding", 0)
    node = helper.make_node("ConvTranspose" if case.transposed else "Conv", ["x", "w", "b"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], case.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, case.out_shape)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    # opset 17 / IR 8: old enough for any onnxruntime >= 1.13, new enough for every attribute used
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})[0]


_MAKERS = {"convcore": make_convcore, "torch": make_torch, "onnxruntime": make_onnxruntime}
