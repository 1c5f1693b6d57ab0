// pictures.cpp: `cvae sample`, `reconstruct`, `interpolate` and `manifold`:
// decode something and write it as a PNG grid.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "apps/commands.h"
#include "apps/output_file.h"
#include "engine/autograd.h"
#include "engine/png.h"

namespace cvae::app {
namespace {

// Stacks image tensors [n_i,1,H,W] along the batch dimension.
Tensor concat_images(const std::vector<Tensor>& parts) {
  int64_t n = 0;
  for (const Tensor& t : parts) n += t.size(0);
  Shape s = parts.at(0).shape();
  s[0] = n;
  Tensor out = Tensor::empty(s);
  char* dst = static_cast<char*>(out.raw());
  for (const Tensor& t : parts) {
    std::memcpy(dst, t.raw(), t.nbytes());
    dst += t.nbytes();
  }
  return out;
}

// Images [begin, begin+n) of a batch [N,...], copied.
Tensor batch_slice(const Tensor& t, int64_t begin, int64_t n) {
  Shape s = t.shape();
  s[0] = n;
  Tensor out = Tensor::empty(s, t.dtype());
  size_t per = t.nbytes() / static_cast<size_t>(t.size(0));
  std::memcpy(out.raw(), static_cast<const char*>(t.raw()) + per * static_cast<size_t>(begin), per * size_t(n));
  return out;
}

// The output is checked before any work: never a checkpoint, never an
// existing file without --force.
Checkpoint load_model(const PictureOptions& opt) {
  const std::string path = resolve_checkpoint(opt.checkpoint);
  check_output_file(opt.out, opt.force, path);
  return load_checkpoint(path);
}

// Test images idx as a batch, binarized as in training.
Tensor test_images(const Checkpoint& ck, const PictureOptions& opt, const std::vector<int64_t>& idx) {
  Dataset data = load_data_or_explain(opt.data_dir.empty() ? ck.config.data_dir : opt.data_dir);
  for (int64_t i : idx)
    if (i < 0 || i >= data.test.count)
      throw UsageError("test image index " + std::to_string(i) + " is outside [0, " +
                       std::to_string(data.test.count) + ")");
  return gather_batch(data.test, idx.data(), int(idx.size()), ck.config.binarize,
                      stream_seed(ck.config.seed, Stream::Binarize) + 1, 0);
}

void require_vae(const Checkpoint& ck, const char* what) {
  if (!ck.model->is_vae())
    throw UsageError(std::string(what) + " needs a VAE (cvae or vae-mlp); this checkpoint holds " +
                     ck.config.model.kind);
}

int written(const std::string& path, const char* what) {
  std::printf("wrote %s (%s)\n", path.c_str(), what);
  return 0;
}

// The standard normal quantile: Acklam's rational approximation refined by one
// Halley step on erfc (accurate to ~1e-15 on (0,1)).
double normal_quantile(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (p < 0.02425) {
    double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p > 1 - 0.02425) {
    double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

}  // namespace

int run_sample(const PictureOptions& opt) {
  Checkpoint ck = load_model(opt);
  require_vae(ck, "sample");
  int n = opt.n > 0 ? opt.n : 16;
  int cols = static_cast<int>(std::ceil(std::sqrt(double(n))));
  NoGradGuard no_grad;
  Philox rng{stream_seed(opt.seed, Stream::Samples), 0};
  Tensor images = ck.model->decode_images(randn({n, ck.model->latent_dim()}, rng));
  write_png_grid(opt.out, images, (n + cols - 1) / cols, cols);
  return written(opt.out, "samples decoded from z ~ N(0, I)");
}

int run_reconstruct(const PictureOptions& opt) {
  Checkpoint ck = load_model(opt);
  int n = opt.n > 0 ? opt.n : 8;
  std::vector<int64_t> idx;
  for (int i = 0; i < n; ++i) idx.push_back(opt.from + i);
  Tensor x = test_images(ck, opt, idx);
  NoGradGuard no_grad;
  Tensor images = concat_images({x, ck.model->reconstruct(x)});
  write_png_grid(opt.out, images, 2, n);
  return written(opt.out, "top row: test images, bottom row: reconstructions");
}

int run_interpolate(const PictureOptions& opt) {
  Checkpoint ck = load_model(opt);
  int steps = opt.n > 0 ? opt.n : 10;
  if (steps < 2) throw UsageError("--steps must be >= 2");
  Tensor x = test_images(ck, opt, {opt.from, opt.to});
  NoGradGuard no_grad;
  Tensor z = ck.model->encode(x).first;  // the means for VAEs
  int64_t L = z.size(1);
  Tensor path = Tensor::empty({steps, L});
  const float* pz = z.data<float>();
  float* pp = path.data<float>();
  for (int i = 0; i < steps; ++i) {
    float t = float(i) / float(steps - 1);
    for (int64_t j = 0; j < L; ++j) pp[i * L + j] = (1 - t) * pz[j] + t * pz[L + j];
  }
  Tensor decoded = ck.model->decode_images(path);
  Tensor images = concat_images({batch_slice(x, 0, 1), decoded, batch_slice(x, 1, 1)});
  write_png_grid(opt.out, images, 1, steps + 2);
  return written(opt.out, "test image, the decoded path between the two codes, test image");
}

int run_manifold(const PictureOptions& opt) {
  Checkpoint ck = load_model(opt);
  require_vae(ck, "manifold");
  if (ck.model->latent_dim() != 2)
    throw UsageError("manifold draws a 2-D latent space; this model has latent_dim " +
                     std::to_string(ck.model->latent_dim()));
  int n = opt.n > 0 ? opt.n : 20;
  // The tutorial's plot_latent_images: normal quantiles of linspace(0.05, 0.95, n);
  // row i takes z[1] = grid[i], column j takes z[0] = grid[j].
  std::vector<double> grid(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) grid[size_t(i)] = normal_quantile(0.05 + 0.9 * (n > 1 ? double(i) / (n - 1) : 0.5));
  Tensor z = Tensor::empty({int64_t(n) * n, 2});
  float* pz = z.data<float>();
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      pz[2 * (i * n + j)] = float(grid[size_t(j)]);
      pz[2 * (i * n + j) + 1] = float(grid[size_t(i)]);
    }
  NoGradGuard no_grad;
  write_png_grid(opt.out, ck.model->decode_images(z), n, n, 0);
  return written(opt.out, "the decoder over a grid of latent normal quantiles");
}

}  // namespace cvae::app
