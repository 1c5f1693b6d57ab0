#!/usr/bin/env python3
"""PyTorch twin of benchmarks/bench_train_step.cpp: one CVAE training step
(forward, backward, Adam) on the CPU, timed the same way.

    python3 benchmarks/reference/bench_step_pytorch.py [--threads 2] [--steps 50]

Same model (apps/python/cvae_torch.py, TF semantics), same shapes (batch 100,
latent 50; batch 32, latent 2), binary inputs of MNIST's density. Prints ms
per step and images/s after a warm-up, median of 5 repeats.
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


def time_steps(batch, latent, steps):
    torch.manual_seed(0)
    model = CVAE(latent)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    x = (torch.rand(batch, 1, 28, 28) < 0.13).float()
    gen = torch.Generator().manual_seed(1)

    def step():
        loss = compute_loss(model, x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):  # warm-up: allocator, oneDNN primitive caches
        step()
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        runs.append((time.perf_counter() - t0) / steps)
    return statistics.median(runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("torch %s, %d threads" % (torch.__version__, torch.get_num_threads()))
    for batch, latent in ((100, 50), (32, 2)):
        s = time_steps(batch, latent, a.steps)
        print("pytorch_train_step batch %3d latent %2d: %7.2f ms/step  %7.0f images/s"
              % (batch, latent, s * 1e3, batch / s))


if __name__ == "__main__":
    main()
