#!/usr/bin/env python3
"""JAX twin of benchmarks/reference/bench_step_pytorch.py: one CVAE training
step (forward, backward, Adam) as one jax.jit function, timed the same way.

    python3 benchmarks/reference/bench_step_jax.py [--threads 2] [--steps 50] [--device cpu|cuda]
        [--precision fp32|tf32] [--shapes 100x50,32x2]

The tutorial's CVAE ("Convolutional Variational Autoencoder", TensorFlow), in
plain jax.numpy / jax.lax with PyTorch's parameter layouts (as
apps/python/cvae_torch.py): conv 32 and 64 (k3, stride 2, valid, ReLU), dense
to 2*latent (mean | logvar); dense to 7*7*32 (ReLU), TF-'same' transposed convs
64 and 32 (k3, stride 2, ReLU) and 1 (k3, stride 1); Glorot-uniform kernels
(Keras's fans), zero biases. Loss: the tutorial's one-sample Monte Carlo ELBO
(sigmoid cross-entropy + log-normal terms). Adam written out (no optax): lr
1e-4, betas 0.9/0.999, eps 1e-7, PyTorch's update. The step (noise key split,
loss, gradients, Adam) is one jit with its state donated; binary inputs of
MNIST's density. Prints ms per step and images/s after a warm-up (10 steps, the
compile included), median of 5 repeats of --steps steps, then the loss of the
first step and of the last timed one, in bench_step_pytorch.py's line format
("jax_train_step DEVICE jit batch B latent L: X ms/step ...").

--device cuda without a CUDA device for JAX prints one line and exits 0, as the
PyTorch script does. --precision fp32 (default) asks XLA for full FP32 dots and
convolutions ("highest"), the arithmetic cvae-engine does; tf32 leaves XLA's
default (TF32 tensor cores on the GPU). --threads N pins the process to N CPUs
(XLA's CPU thread pool has no public knob); it does not matter on the GPU.
"""

import argparse
import math
import os
import statistics
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32"),
                    help="fp32: full FP32 dots/convs (as cvae-engine); tf32: XLA's default")
    ap.add_argument("--shapes", default="100x50,32x2", help="batch x latent, comma separated")
    return ap.parse_args()


A = parse_args() if __name__ == "__main__" else None  # importable (for checks) without side effects
if A is not None:
    # Before jax is imported: the platform, no up-front grab of 75% of GPU memory, the CPUs.
    os.environ["JAX_PLATFORMS"] = A.device
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if A.device == "cpu" and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:max(1, A.threads)])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

LOG2PI = math.log(2.0 * math.pi)
DN = ("NCHW", "OIHW", "NCHW")  # PyTorch's layouts


def param_shapes(L):
    """name -> shape, the names and layouts of apps/python/cvae_torch.py."""
    return {
        "encoder.conv1.weight": (32, 1, 3, 3), "encoder.conv1.bias": (32,),
        "encoder.conv2.weight": (64, 32, 3, 3), "encoder.conv2.bias": (64,),
        "encoder.fc.weight": (2 * L, 2304), "encoder.fc.bias": (2 * L,),
        "decoder.fc.weight": (1568, L), "decoder.fc.bias": (1568,),
        "decoder.deconv1.weight": (32, 64, 3, 3), "decoder.deconv1.bias": (64,),
        "decoder.deconv2.weight": (64, 32, 3, 3), "decoder.deconv2.bias": (32,),
        "decoder.deconv3.weight": (32, 1, 3, 3), "decoder.deconv3.bias": (1,),
    }


def init_params(key, L):
    """Glorot uniform kernels with Keras's fans (conv: k*k*in + k*k*out; dense: in + out), zero biases."""
    params = {}
    for name, shape in param_shapes(L).items():
        if name.endswith(".bias"):
            params[name] = jnp.zeros(shape, jnp.float32)
            continue
        key, sub = jax.random.split(key)
        rf = shape[2] * shape[3] if len(shape) == 4 else 1
        limit = math.sqrt(6.0 / ((shape[0] + shape[1]) * rf))
        params[name] = jax.random.uniform(sub, shape, jnp.float32, -limit, limit)
    return params


def conv(x, w, b, stride, precision):
    """Conv2d, valid padding, w [out,in,k,k]."""
    y = lax.conv_general_dilated(x, w, (stride, stride), "VALID", dimension_numbers=DN, precision=precision)
    return y + b[None, :, None, None]


def deconv_same(x, w, b, stride, precision):
    """TF Conv2DTranspose(k3, padding='same'), w [in,out,k,k] (ConvTranspose2d's layout).

    A transposed conv is the conv of the stride-dilated input with the flipped,
    in/out-swapped kernel. Stride 2: TF keeps the first 2H of ConvTranspose2d's
    2H+1 rows (pad 2 before, 1 after); stride 1: pad 1 each side.
    """
    wf = jnp.flip(jnp.transpose(w, (1, 0, 2, 3)), axis=(2, 3))
    pad = ((2, 1), (2, 1)) if stride == 2 else ((1, 1), (1, 1))
    y = lax.conv_general_dilated(x, wf, (1, 1), pad, lhs_dilation=(stride, stride),
                                 dimension_numbers=DN, precision=precision)
    return y + b[None, :, None, None]


def encode(p, x, L, precision):
    h = jax.nn.relu(conv(x, p["encoder.conv1.weight"], p["encoder.conv1.bias"], 2, precision))  # 28 -> 13
    h = jax.nn.relu(conv(h, p["encoder.conv2.weight"], p["encoder.conv2.bias"], 2, precision))  # 13 -> 6
    h = jnp.dot(h.reshape(h.shape[0], -1), p["encoder.fc.weight"].T, precision=precision) + p["encoder.fc.bias"]
    return h[:, :L], h[:, L:]


def decode(p, z, precision):
    h = jax.nn.relu(jnp.dot(z, p["decoder.fc.weight"].T, precision=precision) + p["decoder.fc.bias"])
    h = h.reshape(-1, 32, 7, 7)
    h = jax.nn.relu(deconv_same(h, p["decoder.deconv1.weight"], p["decoder.deconv1.bias"], 2, precision))
    h = jax.nn.relu(deconv_same(h, p["decoder.deconv2.weight"], p["decoder.deconv2.bias"], 2, precision))
    return deconv_same(h, p["decoder.deconv3.weight"], p["decoder.deconv3.bias"], 1, precision)  # logits


def log_normal_pdf(sample, mean, logvar):
    return jnp.sum(-0.5 * ((sample - mean) ** 2 * jnp.exp(-logvar) + logvar + LOG2PI), axis=1)


def compute_loss(p, x, eps, L, precision):
    """The tutorial's loss: -mean(logpx_z + logpz - logqz_x), with z = eps * exp(logvar/2) + mean."""
    mean, logvar = encode(p, x, L, precision)
    z = eps * jnp.exp(logvar * 0.5) + mean
    logits = decode(p, z, precision)
    # sigmoid cross-entropy with logits, TF's stable form: max(l,0) - l*x + log(1 + exp(-|l|))
    ce = jnp.maximum(logits, 0.0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    logpx_z = -jnp.sum(ce, axis=(1, 2, 3))
    logpz = log_normal_pdf(z, 0.0, 0.0)
    logqz_x = log_normal_pdf(z, mean, logvar)
    return -jnp.mean(logpx_z + logpz - logqz_x)


def make_step(L, lr=1e-4, b1=0.9, b2=0.999, adam_eps=1e-7, precision=None):
    """One jitted step: (params, m, v, t, key, x) -> (params, m, v, t, key, loss); state donated."""

    def step(params, m, v, t, key, x):
        key, sub = jax.random.split(key)
        eps = jax.random.normal(sub, (x.shape[0], L), jnp.float32)
        loss, grads = jax.value_and_grad(compute_loss)(params, x, eps, L, precision)
        t = t + 1
        c1 = 1.0 - b1 ** t
        c2 = 1.0 - b2 ** t
        m = jax.tree_util.tree_map(lambda m_, g: b1 * m_ + (1.0 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v_, g: b2 * v_ + (1.0 - b2) * g * g, v, grads)
        # PyTorch's Adam: p -= lr * (m / c1) / (sqrt(v / c2) + eps)
        params = jax.tree_util.tree_map(
            lambda p_, m_, v_: p_ - lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + adam_eps), params, m, v)
        return params, m, v, t, key, loss

    return jax.jit(step, donate_argnums=(0, 1, 2, 3, 4))


def time_steps(batch, latent, steps, precision):
    """Median seconds per step over 5 repeats, and the (first, last) losses."""
    key = jax.random.PRNGKey(0)
    kp, kx, key = jax.random.split(key, 3)
    params = init_params(kp, latent)
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    x = (jax.random.uniform(kx, (batch, 1, 28, 28)) < 0.13).astype(jnp.float32)
    step = make_step(latent, precision=precision)
    state = (params, m, v, t, key)
    state_and_loss = step(*state, x)  # the first call compiles
    first = float(state_and_loss[-1])
    for _ in range(9):  # warm-up
        state_and_loss = step(*state_and_loss[:-1], x)
    jax.block_until_ready(state_and_loss)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            state_and_loss = step(*state_and_loss[:-1], x)
        jax.block_until_ready(state_and_loss)  # dispatch is asynchronous: wait for the last step
        runs.append((time.perf_counter() - t0) / steps)
    return statistics.median(runs), first, float(state_and_loss[-1])


def main():
    a = A
    try:
        devs = jax.devices()
    except Exception as e:  # noqa: BLE001 (no CUDA plugin: RuntimeError, or an AssertionError in jax 0.10)
        if a.device == "cuda":
            why = (str(e).splitlines() or [type(e).__name__])[0][:100]
            print("jax_train_step: no CUDA device for jax; nothing to time (%s)" % why)
            return 0
        raise
    precision = lax.Precision.HIGHEST if a.precision == "fp32" else None
    where = devs[0].device_kind if a.device == "cuda" else "%d CPUs" % len(os.sched_getaffinity(0))
    print("jax %s, jit, %s, %s" % (jax.__version__, a.precision, where))
    for shape in a.shapes.split(","):
        batch, latent = (int(v) for v in shape.split("x"))
        s, first, last = time_steps(batch, latent, a.steps, precision)
        print("jax_train_step %s jit batch %3d latent %2d: %8.3f ms/step  %9.0f images/s  "
              "epoch(600 steps) %.3f s  loss %.2f -> %.2f"
              % (a.device, batch, latent, s * 1e3, batch / s, s * 600, first, last), flush=True)


if __name__ == "__main__":
    sys.exit(main())
