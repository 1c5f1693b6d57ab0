#!/usr/bin/env python3
"""cost_model.py: what one CVAE training step on the GPU costs at least, kernel by kernel.

For every kernel one eager step launches (batch 100, latent 50 by default; the list is the
one tests/test_cuda_training.cpp counts, AStepAtBatch100QueuesAtMost40KernelsAndNoCopies),
its launch configuration (from the dispatch rules of kernels/cuda/*.cu), its arithmetic
(FLOPs, a multiply-add = 2) and the bytes it must move at least (every input read once,
every output written once, float32), and the H100 floor: max(FLOPs / 67 TFLOP/s FP32,
bytes / 3.35 TB/s). The sum is set against the issue's goal, a 0.1 s MNIST epoch.
Not here: measured times (a GPU run's job: gpu_check.sh), launch latency beyond a note.

  python3 benchmarks/cost_model.py [--batch 100] [--latent 50] [--markdown]
"""
import argparse
import math

PEAK_FLOPS = 67e12  # H100 SXM, FP32 (non-tensor-core)
PEAK_BYTES = 3.35e12  # H100 SXM, HBM3
SMS = 132
EPOCH_IMAGES = 60000
GOAL_EPOCH_S = 0.1
F = 4  # bytes per float


def cdiv(a, b):
    return (a + b - 1) // b


# ----------------------------------------------------------------- launch rules (kernels/cuda)
def conv_tile(channels, pixels):  # conv2d.cu tile_for, kThreads 128, kTargetBlocks 256
    if channels == 1:
        return 1
    if channels <= 4:
        return 4
    return 4 if cdiv(pixels, 128) * cdiv(channels, 8) < 256 else 8


def conv_grid(channels, pixels):
    t = conv_tile(channels, pixels)
    return f"({cdiv(pixels, 128)},{cdiv(channels, t)}) x 128"


def wgrad_grid(K, C, RS):  # conv2d.cu conv2d_wgrad, 256 threads
    wide = K * C * cdiv(RS, 9)
    taps = min(RS, 9) if wide >= 4 * 256 else 1
    return f"({C * cdiv(RS, taps)},{K}) x 256"


def gemm_grid(M, N, K):  # gemm.cu gemm_ex: Large / Medium / Small with split K
    if cdiv(M, 128) * cdiv(N, 128) >= 2 * SMS:
        return f"({cdiv(N, 128)},{cdiv(M, 128)}) x 256"
    if cdiv(M, 64) * cdiv(N, 64) >= SMS:
        return f"({cdiv(N, 64)},{cdiv(M, 64)}) x 256"
    t = cdiv(M, 32) * cdiv(N, 32)
    splits = max(1, min(cdiv(SMS, t), K // 64, 32))
    if splits > 1:
        k_split = cdiv(cdiv(K, splits), 32) * 32
        splits = cdiv(K, k_split)
    z = f",{splits}" if splits > 1 else ""
    return f"({cdiv(N, 32)},{cdiv(M, 32)}{z}) x 256"


def flat_grid(n, per_thread=1):  # grid-stride kernels: min(ceil(n/256), 65535) x 256
    return f"{min(cdiv(cdiv(n, per_thread), 256), 65535)} x 256"


def bias_grid(N, C, HW):  # elementwise.cu bias_grad
    if HW == 1:
        return f"({cdiv(C, 256)},{cdiv(N, 32)}) x 256"
    return f"({cdiv(N * HW, 1024)},{C}) x 256"


# ----------------------------------------------------------------------------- the step
def step_kernels(B, L):
    """(name, launch, flops, bytes) for each kernel of one eager step, in launch order."""
    k = []

    def add(name, launch, flops, nbytes):
        k.append((name, launch, flops, nbytes))

    # A conv layer's FLOPs, the same for its three passes (fprop, dgrad, wgrad): 2 N K P Q C R S
    # of the forward conv [N,C,H,W] -> [N,K,P,Q] (for a transposed conv, the conv whose
    # dgrad it is: P, Q the small side).
    def conv(N, C, K, P, Q, R=3, S=3):
        return 2 * N * K * P * Q * C * R * S

    # Shapes: encoder 28 -> 13 (conv1 1->32) -> 6 (conv2 32->64) -> dense 2304 -> 2L;
    # decoder dense L -> 1568 = 7*7*32, deconv1 32->64 7->14, deconv2 64->32 14->28,
    # deconv3 32->1 28->28 (s1).
    c1, c2 = conv(B, 1, 32, 13, 13), conv(B, 32, 64, 6, 6)
    t1, t2, t3 = conv(B, 64, 32, 7, 7), conv(B, 32, 64, 14, 14), conv(B, 32, 1, 28, 28)
    x, h1, h2, feat = B * 784, B * 32 * 169, B * 64 * 36, B * 2304
    d0, d1, d2, d3 = B * 1568, B * 64 * 196, B * 32 * 784, B * 784
    w1, w2, we, wd = 32 * 9, 64 * 32 * 9, 2 * L * 2304, 1568 * L
    wt1, wt2, wt3 = 32 * 64 * 9, 64 * 32 * 9, 32 * 9
    z = B * L
    # forward
    add("gather_batch (uint8 -> binarized float)", flat_grid(x), 0, B * 784 * 1 + x * F)
    add("normal_fill eps", flat_grid(z, 4), 0, z * F)
    add("conv1 fprop + bias + ReLU", conv_grid(32, B * 169), c1, (x + w1 + 32 + h1) * F)
    add("conv2 fprop + bias + ReLU", conv_grid(64, B * 36), c2, (h1 + w2 + 64 + h2) * F)
    add("encoder dense (GEMM + bias, split K)", gemm_grid(B, 2 * L, 2304), 2 * B * 2304 * 2 * L,
        (feat + we + 2 * L + 2 * z) * F)
    add("split mean | logvar", flat_grid(2 * z), 0, 4 * z * F)
    add("reparameterize z = eps e^(lv/2) + m", flat_grid(z), 4 * z, 4 * z * F)
    add("decoder dense (GEMM + bias + ReLU)", gemm_grid(B, 1568, L), 2 * B * L * 1568, (z + wd + 1568 + d0) * F)
    add("deconv1 = dgrad + bias + ReLU", conv_grid(64, B * 196), t1, (d0 + wt1 + 64 + d1) * F)
    add("deconv2 = dgrad + bias + ReLU", conv_grid(32, B * 784), t2, (d1 + wt2 + 32 + d2) * F)
    add("deconv3 = dgrad + bias", conv_grid(1, B * 784), t3, (d2 + wt3 + 1 + d3) * F)
    add("vae loss: rows + batch mean (one launch)", f"{B} x 128", 12 * (d3 + z), (2 * d3 + 3 * z + B) * F)
    add("add loss to the running sum", flat_grid(1), 1, 3 * F)
    # backward
    add("vae loss backward (dlogits, dz, dmean, dlogvar)", flat_grid(d3 + z), 8 * (d3 + z), (3 * d3 + 7 * z) * F)
    add("deconv3 bias gradient", bias_grid(B, 1, 784), d3, (d3 + 1) * F)
    add("deconv3 dx = fprop(dy, w)", conv_grid(32, B * 784), t3, (d3 + wt3 + d2) * F)
    add("deconv3 dw = wgrad", wgrad_grid(1, 32, 9), t3, (d3 + d2 + wt3) * F)
    add("deconv2 ReLU backward + bias gradient", bias_grid(B, 32, 784), 2 * d2, (3 * d2 + 32) * F)
    add("deconv2 dx = fprop", conv_grid(64, B * 196), t2, (d2 + wt2 + d1) * F)
    add("deconv2 dw = wgrad", wgrad_grid(32, 64, 9), t2, (d2 + d1 + wt2) * F)
    add("deconv1 ReLU backward + bias gradient", bias_grid(B, 64, 196), 2 * d1, (3 * d1 + 64) * F)
    add("deconv1 dx = fprop", conv_grid(32, B * 49), t1, (d1 + wt1 + d0) * F)
    add("deconv1 dw = wgrad", wgrad_grid(64, 32, 9), t1, (d1 + d0 + wt1) * F)
    add("decoder dense ReLU backward + bias gradient", bias_grid(B, 1568, 1), 2 * d0, (3 * d0 + 1568) * F)
    add("decoder dense dx (GEMM)", gemm_grid(B, L, 1568), 2 * B * 1568 * L, (d0 + wd + z) * F)
    add("decoder dense dw (GEMM)", gemm_grid(1568, L, B), 2 * B * 1568 * L, (d0 + z + wd) * F)
    add("dz += decoder's dx", flat_grid(z), z, 3 * z * F)
    add("reparameterize backward (into dmean, dlogvar)", flat_grid(z), 6 * z, 7 * z * F)
    add("split backward: place dmean", flat_grid(2 * z), 0, 3 * z * F)
    add("split backward: add dlogvar", flat_grid(z), z, 3 * z * F)
    add("encoder dense bias gradient", bias_grid(B, 2 * L, 1), 2 * z, (2 * z + 2 * L) * F)
    add("encoder dense dx (GEMM)", gemm_grid(B, 2304, 2 * L), 2 * B * 2304 * 2 * L, (2 * z + we + feat) * F)
    add("encoder dense dw (GEMM, split K)", gemm_grid(2 * L, 2304, B), 2 * B * 2304 * 2 * L, (2 * z + feat + we) * F)
    add("conv2 ReLU backward + bias gradient", bias_grid(B, 64, 36), 2 * h2, (3 * h2 + 64) * F)
    add("conv2 dx = dgrad", conv_grid(32, B * 169), c2, (h2 + w2 + h1) * F)
    add("conv2 dw = wgrad", wgrad_grid(64, 32, 9), c2, (h2 + h1 + w2) * F)
    add("conv1 ReLU backward + bias gradient", bias_grid(B, 32, 169), 2 * h1, (3 * h1 + 32) * F)
    add("conv1 dw = wgrad", wgrad_grid(32, 1, 9), c1, (h1 + x + w1) * F)
    params = w1 + 32 + w2 + 64 + we + 2 * L + wd + 1568 + wt1 + 64 + wt2 + 32 + wt3 + 1
    add("Adam, every parameter in one launch", flat_grid(params), 12 * params, 5 * params * F)
    return k, params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--latent", type=int, default=50)
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (RESULTS.md)")
    a = ap.parse_args()
    kernels, params = step_kernels(a.batch, a.latent)
    rows, total_floor, total_flops, total_bytes = [], 0.0, 0, 0
    for name, launch, flops, nbytes in kernels:
        t_f, t_b = flops / PEAK_FLOPS, nbytes / PEAK_BYTES
        floor = max(t_f, t_b)
        rows.append((name, launch, flops, nbytes, floor * 1e6, "compute" if t_f >= t_b else "memory"))
        total_floor += floor
        total_flops += flops
        total_bytes += nbytes
    steps = math.ceil(EPOCH_IMAGES / a.batch)
    if a.markdown:
        print("| # | kernel | grid x block | MFLOP | MB moved | H100 floor (us) | bound by |")
        print("|---|---|---|---:|---:|---:|---|")
        for i, (n, l, fl, b, us, by) in enumerate(rows, 1):
            print(f"| {i} | {n} | {l} | {fl / 1e6:.2f} | {b / 1e6:.3f} | {us:.2f} | {by} |")
    else:
        print(f"{'#':>2} {'kernel':48} {'grid x block':22} {'MFLOP':>9} {'MB':>8} {'floor us':>9}  bound")
        for i, (n, l, fl, b, us, by) in enumerate(rows, 1):
            print(f"{i:>2} {n:48} {l:22} {fl / 1e6:9.2f} {b / 1e6:8.3f} {us:9.2f}  {by}")
    print()
    print(f"batch {a.batch}, latent {a.latent}: {len(kernels)} kernels a step, {params} parameters")
    print(f"step: {total_flops / 1e9:.2f} GFLOP, {total_bytes / 1e6:.1f} MB at least; "
          f"H100 floor {total_floor * 1e6:.1f} us (sum of the kernels' floors)")
    print(f"epoch ({steps} steps of {EPOCH_IMAGES} images): floor {total_floor * steps * 1e3:.1f} ms "
          f"against the goal {GOAL_EPOCH_S * 1e3:.0f} ms ({GOAL_EPOCH_S / steps * 1e6:.0f} us a step)")
    top = sorted(rows, key=lambda r: -r[4])[:5]
    share = ", ".join(f"{r[0]} {100 * r[4] / (total_floor * 1e6):.0f}%" for r in top)
    print(f"largest floors: {share}")
    for launch_us in (2.0, 1.0):
        print(f"with {launch_us:.0f} us of issue cost per kernel ({len(kernels)} kernels): "
              f"{(total_floor * 1e6 + launch_us * len(kernels)) * steps / 1e3:.1f} ms an epoch")


if __name__ == "__main__":
    main()
