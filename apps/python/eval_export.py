#!/usr/bin/env python3
"""Evaluates a cvae-engine export (safetensors) in PyTorch: test-set ELBO in nats.

    python3 apps/python/eval_export.py EXPORT.safetensors [--data DIR] [--k 10] [--seed 0]
                                       [--batch-size 1000] [--threads N] [--limit N] [--json]

Loads the export with safetensors.torch.load_file, infers latent_dim from the
weight shapes (and prints the file's __metadata__ model/latent_dim/dataset/epoch
if present), loads it into apps/python/cvae_torch.CVAE with strict=True and
evaluates on DIR's t10k images (default /usr/share/datasets/fashion-mnist; the
real MNIST is /work/shared/data/mnist). Prints `elbo_mc <v>` and
`elbo_analytic <v>` (mean over test images; MC = average of K single-sample
ELBOs, analytic = log p(x|z) averaged over K samples minus the KL), or one JSON
object with --json. A missing or bad file: one line on stderr, exit code 2.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from cvae_torch import CVAE, PARAM_SHAPES, evaluate_elbo, load_split  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


class BadInput(Exception):
    pass


def load_export(path):
    """Returns (state_dict, metadata dict, latent_dim); raises BadInput with a one-line reason."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    if not os.path.exists(path):
        raise BadInput("%s: no such file" % path)
    if not os.path.isfile(path):
        raise BadInput("%s: not a regular file" % path)
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises SafetensorError/OSError/ValueError...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput("%s: not a readable safetensors file (%s)" % (path, msg))
    missing = [n for n in PARAM_SHAPES if n not in tensors]
    if missing:
        raise BadInput("%s: missing tensor %s (%d of %d missing)"
                       % (path, missing[0], len(missing), len(PARAM_SHAPES)))
    extra = sorted(n for n in tensors if n not in PARAM_SHAPES)
    if extra:
        raise BadInput("%s: unexpected tensor %s (not a CVAE export?)" % (path, extra[0]))
    ew, dw = tensors["encoder.fc.weight"], tensors["decoder.fc.weight"]
    if ew.dim() != 2 or dw.dim() != 2 or ew.shape[0] % 2 or ew.shape[0] // 2 < 1:
        raise BadInput("%s: encoder.fc.weight has shape %s, want [2*latent, 2304]"
                       % (path, list(ew.shape)))
    latent = ew.shape[0] // 2
    if dw.shape[1] != latent:
        raise BadInput("%s: decoder.fc.weight has shape %s, encoder.fc.weight says latent %d"
                       % (path, list(dw.shape), latent))
    for n, shape in PARAM_SHAPES.items():
        t = tensors[n]
        if tuple(t.shape) != shape(latent):
            raise BadInput("%s: %s has shape %s, want %s" % (path, n, list(t.shape), list(shape(latent))))
        if not t.is_floating_point():
            raise BadInput("%s: %s has dtype %s, want a float type" % (path, n, t.dtype))
        if not bool(torch.isfinite(t).all()):
            raise BadInput("%s: %s holds non-finite values" % (path, n))
    if "latent_dim" in meta:
        try:
            ml = int(meta["latent_dim"])
        except ValueError:
            raise BadInput("%s: metadata latent_dim %r is not an integer" % (path, meta["latent_dim"]))
        if ml != latent:
            raise BadInput("%s: metadata latent_dim %d, weight shapes say %d" % (path, ml, latent))
    return {n: t.to(torch.float32) for n, t in tensors.items()}, meta, latent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export", help="EXPORT.safetensors written by `cvae export`")
    ap.add_argument("--data", default=DEFAULT_DATA, help="IDX dataset folder (default %(default)s)")
    ap.add_argument("--k", type=int, default=10, help="samples of z per image (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default 0)")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--limit", type=int, default=0, help="evaluate the first N test images only")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    if a.k < 1 or a.batch_size < 1:
        print("error: --k and --batch-size must be >= 1", file=sys.stderr)
        return 2
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    try:
        state, meta, latent = load_export(a.export)
    except BadInput as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    try:
        images = load_split(a.data, "test")
    except (OSError, ValueError, EOFError) as e:
        print("error: %s" % str(e).splitlines()[0], file=sys.stderr)
        return 2
    if a.limit > 0:
        images = images[:a.limit]
    if meta.get("binarization", "threshold") != "threshold":
        print("note: the export was trained with binarization '%s'; evaluating on the "
              "tutorial's threshold binarization" % meta["binarization"], file=sys.stderr)
    if images.shape[1:] != (28, 28):
        print("error: %s: images are %dx%d, the CVAE needs 28x28"
              % (a.data, images.shape[1], images.shape[2]), file=sys.stderr)
        return 2
    model = CVAE(latent)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        print("error: %s: %s" % (a.export, str(e).splitlines()[0]), file=sys.stderr)
        return 2
    res = evaluate_elbo(model, images, k=a.k, batch_size=a.batch_size, seed=a.seed)
    out = {
        "export": a.export,
        "latent_dim": latent,
        "metadata": meta,
        "data": a.data,
        "num_images": int(images.shape[0]),
        "k": a.k,
        "seed": a.seed,
        "elbo_mc": res["elbo_mc"],
        "elbo_analytic": res["elbo_analytic"],
        "torch": torch.__version__,
    }
    if a.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print("export %s" % a.export)
        for key in ("model", "latent_dim", "dataset", "epoch"):
            if key in meta:
                print("meta.%s %s" % (key, meta[key]))
        print("latent_dim %d (from weight shapes)" % latent)
        print("data %s (%d test images), k %d, seed %d" % (a.data, images.shape[0], a.k, a.seed))
        print("elbo_mc %.4f" % res["elbo_mc"])
        print("elbo_analytic %.4f" % res["elbo_analytic"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
