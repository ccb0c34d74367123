"""A multiprocessing pool of onnxruntime sessions: N processes x onnxruntime's N threads.

An `InferenceSession` starts its own intra-op thread pool, as many threads as physical cores
by default, the calling thread one of them (it runs a share of every parallel operator), and
its idle workers spin before they sleep. In a pool of N worker processes that is N x N
threads on N cores.

    cpuprof -- .venv/bin/python examples/onnx_pool.py
    cpuprof -- .venv/bin/python examples/onnx_pool.py --intra-op-threads 1

onnxruntime reads no environment variable for its pool (its pip builds are not OpenMP): the
fix is `SessionOptions().intra_op_num_threads = 1` where the session is made, in the task.
"""

import argparse
import multiprocessing
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="the session's intra-op pool (0: onnxruntime's default)")
    parser.add_argument("--no-spinning", action="store_true",
                        help="session.intra_op.allow_spinning = 0: idle workers sleep")
    return parser.parse_args()


def model(size):
    """y = tanh(x @ w) @ w: two products and an elementwise operator, serialized. Built once
    in the parent: importing `onnx` costs 0.7 s of CPU, which the workers need not repeat."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((size, size)).astype(np.float32) / size,
        name="w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["a"]),
         helper.make_node("Tanh", ["a"], ["b"]),
         helper.make_node("MatMul", ["b", "w"], ["y"])],
        "products", [x], [y], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def task(args):
    """One session per task, run `runs` times on its own input."""
    onnx_model, size, runs, threads, spin, seed = args
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32)
    total = 0.0
    for _ in range(runs):
        total += float(session.run(None, {"x": x})[0][0, 0])
    return total


def main():
    args = parse_args()
    m = model(args.size)
    wall0 = time.perf_counter()
    tasks = [(m, args.size, args.runs, args.intra_op_threads, not args.no_spinning, i)
             for i in range(args.tasks)]
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        total = sum(pool.map(task, tasks))
    print(f"onnxruntime: {args.tasks} tasks on {args.workers} processes in "
          f"{time.perf_counter() - wall0:.2f} s (checksum {total:.3f})")


if __name__ == "__main__":
    main()
