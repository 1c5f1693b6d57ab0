"""PyTorch twin of the engine's CVAE (TensorFlow tutorial "Convolutional Variational Autoencoder").

A library module, not a program: `from cvae_torch import CVAE, load_idx_images, ...`
(apps/python/eval_export.py and benchmarks/reference/train_pytorch.py import it).
Self-test: `python3 apps/python/cvae_torch.py` checks the TF-`same` transposed
convolution against tests/golden/make_fixtures.py and a random forward/loss pass.

Parameter names and layouts are the C++ export format (PyTorch layouts: Conv2d
[out,in,k,k], ConvTranspose2d [in,out,k,k], Linear [out,in]), so an engine export
loads with `load_state_dict(strict=True)`. Semantics follow TensorFlow (see
/work/shared/DESIGN.md): Conv2DTranspose `same` with k3 s2 is
ConvTranspose2d(padding=0) (7x7 -> 15x15) cropped to its first 14 rows/columns,
NOT PyTorch's padding=1/output_padding=1 (which is shifted by one pixel).
"""

import gzip
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LOG2PI = math.log(2.0 * math.pi)

PARAM_SHAPES = {  # name -> shape, as a function of the latent size L
    "encoder.conv1.weight": lambda L: (32, 1, 3, 3),
    "encoder.conv1.bias": lambda L: (32,),
    "encoder.conv2.weight": lambda L: (64, 32, 3, 3),
    "encoder.conv2.bias": lambda L: (64,),
    "encoder.fc.weight": lambda L: (2 * L, 2304),
    "encoder.fc.bias": lambda L: (2 * L,),
    "decoder.fc.weight": lambda L: (1568, L),
    "decoder.fc.bias": lambda L: (1568,),
    "decoder.deconv1.weight": lambda L: (32, 64, 3, 3),
    "decoder.deconv1.bias": lambda L: (64,),
    "decoder.deconv2.weight": lambda L: (64, 32, 3, 3),
    "decoder.deconv2.bias": lambda L: (32,),
    "decoder.deconv3.weight": lambda L: (32, 1, 3, 3),
    "decoder.deconv3.bias": lambda L: (1,),
}


def tf_same_deconv_s2(x, weight, bias):
    """TF Conv2DTranspose(k3, s2, padding='same'): H -> 2H.

    ConvTranspose2d(padding=0) gives 2H+1; TF keeps the first 2H rows/columns
    (the equivalent forward conv has its odd padding row at the bottom/right).
    """
    y = F.conv_transpose2d(x, weight, bias, stride=2, padding=0)
    oh, ow = 2 * x.shape[2], 2 * x.shape[3]
    return y[:, :, :oh, :ow]


class _Encoder(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, stride=2)   # 28 -> 13, valid
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2)  # 13 -> 6, valid
        self.fc = nn.Linear(64 * 6 * 6, 2 * latent_dim)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        return self.fc(h.reshape(h.shape[0], -1))  # flatten order C,H,W


class _Decoder(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.fc = nn.Linear(latent_dim, 7 * 7 * 32)
        self.deconv1 = nn.ConvTranspose2d(32, 64, 3, stride=2, padding=0)  # TF same, crop
        self.deconv2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=0)  # TF same, crop
        self.deconv3 = nn.ConvTranspose2d(32, 1, 3, stride=1, padding=1)   # s1 same

    def forward(self, z):
        h = F.relu(self.fc(z)).reshape(-1, 32, 7, 7)
        h = F.relu(tf_same_deconv_s2(h, self.deconv1.weight, self.deconv1.bias))  # 7 -> 14
        h = F.relu(tf_same_deconv_s2(h, self.deconv2.weight, self.deconv2.bias))  # 14 -> 28
        return self.deconv3(h)  # logits [B,1,28,28]


class CVAE(nn.Module):
    """The tutorial's CVAE; Keras default init (Glorot uniform kernels, zero biases)."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.encoder = _Encoder(self.latent_dim)
        self.decoder = _Decoder(self.latent_dim)
        self.reset_parameters()

    def reset_parameters(self):
        # Keras fans: conv k*k*in + k*k*out (the same sum for a transposed kernel),
        # dense in + out. torch's xavier_uniform_ computes exactly this sum.
        for name, p in self.named_parameters():
            if name.endswith(".weight"):
                nn.init.xavier_uniform_(p)
            else:
                nn.init.zeros_(p)

    def encode(self, x):
        h = self.encoder(x)
        return h[:, :self.latent_dim], h[:, self.latent_dim:]

    def decode(self, z, apply_sigmoid=False):
        logits = self.decoder(z)
        return torch.sigmoid(logits) if apply_sigmoid else logits

    @staticmethod
    def reparameterize(mean, logvar, generator=None):
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return eps * torch.exp(logvar * 0.5) + mean

    def forward(self, x):
        mean, logvar = self.encode(x)
        z = self.reparameterize(mean, logvar)
        return self.decode(z), mean, logvar, z


# --- data ---------------------------------------------------------------------------

def load_idx_images(path):
    """Reads an IDX image file (gzip or raw) into a uint8 array [N, rows, cols]."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 16:
        raise ValueError("%s: too short for an IDX image header (%d bytes)" % (path, len(raw)))
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x00000803:
        raise ValueError("%s: bad IDX magic 0x%08x (want 0x00000803, uint8 3-D)" % (path, magic))
    need = 16 + n * rows * cols
    if len(raw) != need:
        raise ValueError("%s: size %d bytes, header says %d" % (path, len(raw), need))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def find_idx(data_dir, split):
    """Path of the train/test image file in data_dir (name with or without .gz)."""
    stem = {"train": "train-images", "test": "t10k-images"}[split]
    for name in (stem + "-idx3-ubyte.gz", stem + "-idx3-ubyte",
                 stem + ".idx3-ubyte.gz", stem + ".idx3-ubyte"):
        p = os.path.join(data_dir, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError("%s: no %s-idx3-ubyte[.gz] file" % (data_dir, stem))


def load_split(data_dir, split):
    return load_idx_images(find_idx(data_dir, split))


def binarize(images):
    """The tutorial's threshold: pixel/255 >= 0.5 -> 1.0 else 0.0; [N,1,28,28] float32 tensor."""
    a = np.asarray(images)
    x = (a.astype(np.float32) / 255.0 >= 0.5).astype(np.float32)
    return torch.from_numpy(x.reshape(a.shape[0], 1, a.shape[-2], a.shape[-1]))


# --- loss -----------------------------------------------------------------------------

def log_normal_pdf(sample, mean, logvar):
    """Per-row sum of log N(sample; mean, exp(logvar)) over axis 1 (the tutorial's raxis=1)."""
    return torch.sum(-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar + LOG2PI), dim=1)


def log_px_z(logits, x):
    """log p(x|z) per image: minus the sigmoid cross-entropy summed over C,H,W."""
    ce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return -ce.sum(dim=[1, 2, 3])


def kl_normal(mean, logvar):
    """Analytic KL(q(z|x) || N(0,I)) per row."""
    return -0.5 * torch.sum(1.0 + logvar - mean ** 2 - torch.exp(logvar), dim=1)


def elbo_mc_per_image(model, x, generator=None):
    """Single-sample Monte Carlo ELBO per image: logpx_z + logpz - logqz_x."""
    mean, logvar = model.encode(x)
    z = model.reparameterize(mean, logvar, generator)
    logits = model.decode(z)
    zero = torch.zeros_like(z)
    return log_px_z(logits, x) + log_normal_pdf(z, zero, zero) - log_normal_pdf(z, mean, logvar)


def compute_loss(model, x, generator=None):
    """The tutorial's loss: -mean(logpx_z + logpz - logqz_x)."""
    return -elbo_mc_per_image(model, x, generator).mean()


def compute_loss_analytic(model, x, generator=None):
    """-mean(logpx_z - KL), one sample of z."""
    mean, logvar = model.encode(x)
    z = model.reparameterize(mean, logvar, generator)
    return -(log_px_z(model.decode(z), x) - kl_normal(mean, logvar)).mean()


@torch.no_grad()
def evaluate_elbo(model, images, k=10, batch_size=1000, seed=0, generator=None):
    """Test-set ELBO in nats, mean over images; returns {"elbo_mc": ..., "elbo_analytic": ...}.

    images: uint8 [N,28,28] (binarized here) or an already binarized float tensor [N,1,28,28].
    elbo_mc: per image, the average of k single-sample MC ELBOs.
    elbo_analytic: per image, log p(x|z) averaged over k samples of z, minus the analytic KL.
    Sums are accumulated in float64.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    was_training = model.training
    model.eval()
    x_all = images if torch.is_tensor(images) and images.dtype == torch.float32 else binarize(images)
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    n = x_all.shape[0]
    # All the noise up front, [k, N, L], so the estimate does not depend on batch_size.
    eps_all = torch.randn((k, n, model.latent_dim), generator=generator)
    tot_mc = 0.0
    tot_an = 0.0
    for i in range(0, n, batch_size):
        x = x_all[i:i + batch_size]
        mean, logvar = model.encode(x)
        std = torch.exp(logvar * 0.5)
        zero = torch.zeros_like(mean)
        mc = torch.zeros(x.shape[0], dtype=torch.float64)
        rec = torch.zeros(x.shape[0], dtype=torch.float64)
        for j in range(k):
            z = eps_all[j, i:i + x.shape[0]] * std + mean
            lpx = log_px_z(model.decode(z), x)
            mc += (lpx + log_normal_pdf(z, zero, zero) - log_normal_pdf(z, mean, logvar)).double()
            rec += lpx.double()
        tot_mc += float((mc / k).sum())
        tot_an += float((rec / k - kl_normal(mean, logvar).double()).sum())
    model.train(was_training)
    return {"elbo_mc": tot_mc / n, "elbo_analytic": tot_an / n}


# --- self-test --------------------------------------------------------------------------

def _self_test():
    import importlib.util
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        "make_fixtures", os.path.join(root, "tests", "golden", "make_fixtures.py"))
    argv = sys.argv
    sys.argv = [argv[0]]  # make_fixtures reads OUT_DIR from argv at import
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    sys.argv = argv
    torch.manual_seed(0)
    worst = 0.0
    for (n, ci, co, h, w) in [(3, 32, 64, 7, 7), (2, 64, 32, 14, 14), (2, 3, 2, 4, 5)]:
        x = torch.randn(n, ci, h, w, dtype=torch.float64)
        wt = torch.randn(ci, co, 3, 3, dtype=torch.float64)
        b = torch.randn(co, dtype=torch.float64)
        ours = tf_same_deconv_s2(x, wt, b)
        ref = mf.tf_conv_transpose2d(x, wt, 2, "same") + b.view(1, -1, 1, 1)
        assert ours.shape == ref.shape == (n, co, 2 * h, 2 * w), (ours.shape, ref.shape)
        worst = max(worst, float((ours - ref).abs().max()))
        pt = F.conv_transpose2d(x, wt, b, stride=2, padding=1, output_padding=1)
        print("  deconv s2 %dx%d: |ours - make_fixtures| = %.2e, |PyTorch pad1/outpad1 - ref| = %.2e"
              % (h, w, float((ours - ref).abs().max()), float((pt - ref).abs().max())))
    assert worst < 1e-12, worst
    # Whole model against make_fixtures.TorchCVAE, float64, same weights.
    m = CVAE(2).double()
    ref = mf.TorchCVAE(2)
    ref.load_state_dict(m.state_dict(), strict=True)
    x = (torch.rand(4, 1, 28, 28, dtype=torch.float64) < 0.3).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        ref.load_state_dict(m.state_dict(), strict=True)
        m1, l1 = m.encode(x)
        m2, l2 = ref.encode(x)
        z = torch.randn(4, 2, dtype=torch.float64)
        d = max(float((m1 - m2).abs().max()), float((l1 - l2).abs().max()),
                float((m.decode(z) - ref.decode(z)).abs().max()))
    print("  whole CVAE vs make_fixtures.TorchCVAE: max |diff| = %.2e" % d)
    assert d < 1e-10, d
    names = [n for n, _ in CVAE(2).named_parameters()]
    assert names == list(PARAM_SHAPES), names
    # The golden CVAE fixture (if generated): weights, x, eps -> loss and gradients.
    fix = os.path.join(root, "tests", "fixtures", "cvae.safetensors")
    if os.path.isfile(fix):
        from safetensors.torch import load_file
        t = load_file(fix)
        m = CVAE(2)
        m.load_state_dict({k: t[k] for k in PARAM_SHAPES}, strict=True)
        m = m.double()
        x, eps = t["x"].double(), t["eps"].double()
        mean, logvar = m.encode(x)
        z = eps * torch.exp(logvar * 0.5) + mean
        lpx = log_px_z(m.decode(z), x)
        zero = torch.zeros_like(z)
        mc = -(lpx + log_normal_pdf(z, zero, zero) - log_normal_pdf(z, mean, logvar)).mean()
        an = -(lpx - kl_normal(mean, logvar)).mean()
        mc.backward()
        gd = max(float((p.grad - t["grad." + n]).abs().max() / t["grad." + n].abs().max())
                 for n, p in m.named_parameters())
        print("  tests/fixtures/cvae.safetensors: loss_mc %.9f (ref %.9f), loss_analytic %.9f "
              "(ref %.9f), max rel grad diff %.2e" % (float(mc.detach()), float(t["loss_mc"]),
                                                     float(an.detach()), float(t["loss_analytic"]), gd))
        assert abs(float(mc.detach()) - float(t["loss_mc"])) < 1e-9 and gd < 1e-9
    print("ok")


if __name__ == "__main__":
    _self_test()
