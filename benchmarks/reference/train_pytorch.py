#!/usr/bin/env python3
"""PyTorch reference for the tutorial CVAE training run, timed on this machine's CPU.

    python3 benchmarks/reference/train_pytorch.py --data /work/shared/data/mnist \
        --epochs 10 --batch-size 32 --latent-dim 2 --lr 1e-4 --seed 0 --threads 2 \
        --out results.jsonl [--limit N] [--eval-batch-size 1000]

The tutorial's configuration ("Convolutional Variational Autoencoder"), with the
model of apps/python/cvae_torch.py (TF semantics, Keras init): threshold
binarization (pixel/255 >= 0.5), train set reshuffled every epoch, last partial
batch kept, single-sample MC loss -mean(logpx_z + logpz - logqz_x), Adam(lr,
betas (0.9, 0.999), eps 1e-7 = Keras' default, as the C++ engine uses).
After each epoch: test ELBO as the tutorial computes it (negative single-sample
MC loss, here averaged per image) and the analytic-KL ELBO (K=1); the epoch's
training time (seconds, evaluation excluded) and images/s. One JSON line per
epoch goes to --out, a short human line to stdout. --limit N trains on the first
N training images only (smoke tests; the test set stays whole).
"""

import argparse
import json
import os
import platform
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "apps", "python"))

import torch  # noqa: E402

from cvae_torch import (CVAE, binarize, compute_loss, evaluate_elbo,  # noqa: E402
                        load_split)


def parallel_summary():
    """The BLAS / threading lines of torch.__config__.parallel_info(), joined."""
    keep = []
    for line in torch.__config__.parallel_info().splitlines():
        line = line.strip()
        if line.startswith(("at::get_num_threads", "at::get_num_interop_threads",
                            "OpenMP", "Intel(R) MKL", "MKL_", "OMP_", "ATen parallel backend",
                            "MKLDNN", "std::thread")):
            keep.append(line)
    return "; ".join(keep)


def blas_info():
    """BLAS_INFO / LAPACK_INFO / USE_MKLDNN from torch.__config__.show()."""
    cfg = torch.__config__.show().replace("\n", ",")
    keys = ("BLAS_INFO", "LAPACK_INFO", "USE_MKL", "USE_MKLDNN", "USE_OPENMP")
    found = [t.strip() for t in re.findall(r"(\w+=[^,]*)", cfg) if t.split("=")[0] in keys]
    return "build: " + (", ".join(found) if found else "BLAS_INFO unknown")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="IDX dataset folder")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--latent-dim", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True, help="JSONL file, one line per epoch (overwritten)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    ap.add_argument("--eval-batch-size", type=int, default=1000)
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    print("torch %s, python %s, %s" % (torch.__version__, platform.python_version(), platform.machine()))
    print(blas_info())
    print(parallel_summary())

    try:
        train_u8 = load_split(a.data, "train")
        test_u8 = load_split(a.data, "test")
    except (OSError, ValueError, EOFError) as e:
        print("error: %s" % str(e).splitlines()[0], file=sys.stderr)
        return 2
    if a.limit > 0:
        train_u8 = train_u8[:a.limit]
    train_x = binarize(train_u8)  # [N,1,28,28] float32, once
    test_x = binarize(test_u8)
    n = train_x.shape[0]
    steps = (n + a.batch_size - 1) // a.batch_size
    print("data %s: %d train (%d steps of batch %d, last partial kept), %d test; latent %d, lr %g, "
          "Adam eps 1e-7, threads %d" % (a.data, n, steps, a.batch_size, test_x.shape[0],
                                         a.latent_dim, a.lr, a.threads))

    model = CVAE(a.latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-7)
    shuffle_gen = torch.Generator().manual_seed(a.seed)
    noise_gen = torch.Generator().manual_seed(a.seed + 1)
    eval_gen = torch.Generator().manual_seed(a.seed + 2)

    out = open(a.out, "w")
    total_train = 0.0
    for epoch in range(1, a.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=shuffle_gen)
        loss_sum = 0.0
        for s in range(steps):
            idx = perm[s * a.batch_size:(s + 1) * a.batch_size]
            x = train_x.index_select(0, idx)
            loss = compute_loss(model, x, noise_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * x.shape[0]
        train_s = time.perf_counter() - t0
        total_train += train_s

        t1 = time.perf_counter()
        res = evaluate_elbo(model, test_x, k=1, batch_size=a.eval_batch_size, generator=eval_gen)
        eval_s = time.perf_counter() - t1
        rec = {
            "epoch": epoch,
            "test_elbo": res["elbo_mc"],            # the tutorial's: -(MC loss), per-image mean, K=1
            "test_elbo_analytic": res["elbo_analytic"],  # log p(x|z) (1 sample) - KL
            "train_loss": loss_sum / n,             # mean MC loss over the epoch's images
            "train_seconds": train_s,
            "images_per_second": n / train_s,
            "steps": steps,
            "eval_seconds": eval_s,
            "batch_size": a.batch_size, "latent_dim": a.latent_dim, "lr": a.lr,
            "adam_eps": 1e-7, "seed": a.seed, "threads": a.threads,
            "train_images": n, "test_images": int(test_x.shape[0]),
            "data": a.data, "torch": torch.__version__, "framework": "pytorch",
            "device": "cpu",
            # Other processes on the machine distort the timing: the 1-minute load
            # average at the end of the epoch says how busy it was (2 cores here).
            "loadavg_1m": os.getloadavg()[0],
        }
        out.write(json.dumps(rec, sort_keys=True) + "\n")
        out.flush()
        print("Epoch: %d, Test set ELBO: %.4f (analytic %.4f), train loss %.4f, time elapse for "
              "current epoch: %.2f s (%.0f images/s, %.2f ms/step), eval %.1f s, load %.1f"
              % (epoch, res["elbo_mc"], res["elbo_analytic"], loss_sum / n, train_s, n / train_s,
                 1e3 * train_s / steps, eval_s, rec["loadavg_1m"]), flush=True)
    out.close()
    print("total training time %.1f s over %d epochs" % (total_train, a.epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
