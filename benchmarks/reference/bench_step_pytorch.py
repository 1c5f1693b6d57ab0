#!/usr/bin/env python3
"""PyTorch twin of benchmarks/bench_train_step.cpp: one CVAE training step
(forward, backward, Adam) on the CPU, timed the same way.

    python3 benchmarks/reference/bench_step_pytorch.py [--threads 2] [--steps 50] [--device cpu|cuda]
        [--compile] [--shapes 100x50,32x2]

Same model (apps/python/cvae_torch.py, TF semantics), same shapes (batch 100,
latent 50; batch 32, latent 2), binary inputs of MNIST's density. Prints ms
per step and images/s after a warm-up, median of 5 repeats. --compile times
the loss under torch.compile (the default inductor backend; its noise comes
from torch's global generator, which compiles without a graph break).
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


def time_steps(batch, latent, steps, device="cpu", compiled=False):
    torch.manual_seed(0)
    model = CVAE(latent).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    x = (torch.rand(batch, 1, 28, 28) < 0.13).float().to(device)
    gen = torch.Generator(device=device).manual_seed(1)
    if compiled:
        torch._dynamo.reset()  # a fresh compile per model: no recompiles across shapes
    loss_fn = torch.compile(lambda b: compute_loss(model, b)) if compiled else (
        lambda b: compute_loss(model, b, gen))

    def step():
        loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):  # warm-up: allocator, oneDNN / cuDNN caches
        step()
    runs = []
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        runs.append((time.perf_counter() - t0) / steps)
    return statistics.median(runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--compile", action="store_true", help="the loss under torch.compile")
    ap.add_argument("--shapes", default="100x50,32x2", help="batch x latent, comma separated")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("pytorch_train_step: no CUDA device for torch; nothing to time")
        return
    where = torch.cuda.get_device_name(0) if a.device == "cuda" else "%d threads" % torch.get_num_threads()
    mode = "compile" if a.compile else "eager"
    print("torch %s, %s, %s" % (torch.__version__, mode, where))
    for shape in a.shapes.split(","):
        batch, latent = (int(v) for v in shape.split("x"))
        s = time_steps(batch, latent, a.steps, a.device, a.compile)
        print("pytorch_train_step %s %s batch %3d latent %2d: %8.3f ms/step  %9.0f images/s  epoch(600 steps) %.3f s"
              % (a.device, mode, batch, latent, s * 1e3, batch / s, s * 600), flush=True)


if __name__ == "__main__":
    main()
