#!/usr/bin/env python3
"""PyTorch twin of benchmarks/bench_train_step.cpp: one CVAE training step
(forward, backward, Adam) on the CPU or a GPU, timed the same way.

    python3 benchmarks/reference/bench_step_pytorch.py [--threads 2] [--steps 50] [--device cpu|cuda]
        [--compile [--compile-mode default|reduce-overhead|max-autotune-no-cudagraphs] | --cuda-graph]
        [--precision fp32|tf32] [--shapes 100x50,32x2]

Same model (apps/python/cvae_torch.py, TF semantics), same shapes (batch 100,
latent 50; batch 32, latent 2), binary inputs of MNIST's density. Prints ms
per step and images/s after a warm-up, median of 5 repeats, then the loss of
the first warm-up step and of the last timed step (one fixed batch, so it
falls). Modes:
  eager (default): the step as PyTorch runs it, noise from a torch.Generator;
  --compile: the loss under torch.compile (inductor; --compile-mode is its mode;
    its noise comes from torch's global generator, which compiles without a graph
    break); backward and Adam as in eager;
  --cuda-graph (needs --device cuda): the whole step (forward, loss, backward,
    Adam with capturable=True) captured once with torch.cuda.graph over a static
    input buffer and replayed, noise from the global CUDA generator (graph-safe);
    without CUDA it refuses with one line on stderr and exit status 2.
--precision fp32 (default) keeps cuDNN and cuBLAS off TF32 tensor cores, the
arithmetic cvae-engine's kernels do; tf32 allows them (PyTorch's own default
for convolutions). Lines start with "pytorch_train_step": gpu_check.sh and
compare_cpu.py parse "batch B latent L: X ms/step".
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "apps", "python"))

import torch  # noqa: E402

from cvae_torch import CVAE, compute_loss  # noqa: E402


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()  # CUDA work is asynchronous: time whole steps


def time_steps(batch, latent, steps, device="cpu", mode="eager", compile_mode="default"):
    """Median seconds per step over 5 repeats, and the (first, last) losses."""
    torch.manual_seed(0)
    model = CVAE(latent).to(device)
    graphed = mode == "cuda-graph"
    # capturable: Adam's step counter lives on the device, so the update can be captured
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7, capturable=graphed)
    x = (torch.rand(batch, 1, 28, 28) < 0.13).float().to(device)  # graphed: the static input
    gen = torch.Generator(device=device).manual_seed(1)
    if mode == "compile":
        torch._dynamo.reset()  # a fresh compile per model: no recompiles across shapes
        loss_fn = torch.compile(lambda b: compute_loss(model, b), mode=compile_mode)
    elif graphed:
        loss_fn = lambda b: compute_loss(model, b)  # noqa: E731 (global generator: graph-safe)
    else:
        loss_fn = lambda b: compute_loss(model, b, gen)  # noqa: E731

    def step():
        loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if graphed:
        # PyTorch's whole-network capture recipe: warm up on a side stream (cuDNN
        # and cuBLAS pick their algorithms, Adam makes its state), then capture
        # with the gradients unset so the captured backward writes them afresh.
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            first = float(step().detach())
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static_loss = loss_fn(x)
            static_loss.backward()
            opt.step()
        run = graph.replay
        for _ in range(7):  # the first replays upload the graph
            run()
    else:
        # The loss is read (a sync) at the first step only; later ones keep just
        # the newest tensor (under reduce-overhead older outputs get overwritten).
        first = float(step().detach())
        latest = [None]

        def run():
            latest[0] = step().detach()

        for _ in range(9):  # warm-up: allocator, oneDNN / cuDNN caches, compilation
            run()
    runs = []
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            run()
        sync(device)
        runs.append((time.perf_counter() - t0) / steps)
    last = float((static_loss if graphed else latest[0]).detach())
    return statistics.median(runs), first, last


def refuse(why):
    print("bench_step_pytorch.py: " + why, file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--compile", action="store_true", help="the loss under torch.compile")
    how.add_argument("--cuda-graph", action="store_true",
                     help="the whole step captured once in a CUDA graph and replayed (--device cuda)")
    ap.add_argument("--compile-mode", default="default",
                    choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
                    help="torch.compile's mode, with --compile")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32"),
                    help="fp32: no TF32 tensor cores in cuDNN/cuBLAS (as cvae-engine); tf32: allowed")
    ap.add_argument("--shapes", default="100x50,32x2", help="batch x latent, comma separated")
    a = ap.parse_args()
    if a.cuda_graph and a.device != "cuda":
        refuse("--cuda-graph captures CUDA work: it needs --device cuda")
    if a.cuda_graph and not torch.cuda.is_available():
        refuse("--cuda-graph: torch %s sees no CUDA device" % torch.__version__)
    torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("pytorch_train_step: no CUDA device for torch; nothing to time")
        return
    tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    where = torch.cuda.get_device_name(0) if a.device == "cuda" else "%d threads" % torch.get_num_threads()
    if a.compile:
        mode = "compile" if a.compile_mode == "default" else "compile-" + a.compile_mode
    else:
        mode = "cuda-graph" if a.cuda_graph else "eager"
    print("torch %s, %s, %s, %s" % (torch.__version__, mode, a.precision, where))
    for shape in a.shapes.split(","):
        batch, latent = (int(v) for v in shape.split("x"))
        s, first, last = time_steps(batch, latent, a.steps, a.device,
                                    "compile" if a.compile else mode, a.compile_mode)
        print("pytorch_train_step %s %s batch %3d latent %2d: %8.3f ms/step  %9.0f images/s  "
              "epoch(600 steps) %.3f s  loss %.2f -> %.2f"
              % (a.device, mode, batch, latent, s * 1e3, batch / s, s * 600, first, last), flush=True)


if __name__ == "__main__":
    main()
