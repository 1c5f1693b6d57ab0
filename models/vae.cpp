// vae.cpp: what every VAE here shares: the tutorial's loss (compute_loss) for
// any encoder/decoder pair, and the evaluation bounds (Monte Carlo ELBO, ELBO
// with the analytic KL, importance-weighted bound), batched and tape-free.
#include "models/vae.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"

namespace cvae {

namespace {

// At most this many rows (images, or image-sample pairs) go through one
// encode or decode call in vae_bounds: bounds memory whatever k and N are.
constexpr int64_t kMaxRows = 1000;

// log p(x|z) per row: -sum of the sigmoid cross-entropy over all non-batch dims.
Tensor log_px_z(const Tensor& logits, const Tensor& x) {
  Tensor ce = sigmoid_cross_entropy_with_logits(logits, x);
  std::vector<int> axes;
  for (int d = 1; d < static_cast<int>(ce.dim()); ++d) axes.push_back(d);
  return scale(axes.empty() ? ce : sum(ce, axes), -1.0);
}

// New tensor whose row r is t's row idx[r] (rows = slices along dim 0), on
// t's device. Plain copies: vae_bounds runs without a tape. (On the GPU this
// is a copy per row: fine for evaluation, not for a training step.)
Tensor gather_rows(const Tensor& t, const std::vector<int64_t>& idx) {
  Shape s = t.shape();
  s[0] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(s, t.dtype(), t.device());
  size_t row_bytes = t.nbytes() / static_cast<size_t>(t.size(0));
  auto* src = static_cast<const char*>(t.raw());
  auto* dst = static_cast<char*>(out.raw());
  if (t.device() == Device::CPU) {
    for (size_t r = 0; r < idx.size(); ++r)
      std::memcpy(dst + r * row_bytes, src + static_cast<size_t>(idx[r]) * row_bytes, row_bytes);
    return out;
  }
  // Runs of consecutive source rows (the common case) go in one copy each.
  for (size_t r = 0; r < idx.size();) {
    size_t run = 1;
    while (r + run < idx.size() && idx[r + run] == idx[r] + int64_t(run)) ++run;
    copy_bytes(dst + r * row_bytes, t.device(), src + static_cast<size_t>(idx[r]) * row_bytes,
               t.device(), run * row_bytes);
    r += run;
  }
  return out;
}

// Rows [start, start+count) of t, as a copy.
Tensor slice_rows(const Tensor& t, int64_t start, int64_t count) {
  std::vector<int64_t> idx(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) idx[static_cast<size_t>(i)] = start + i;
  return gather_rows(t, idx);
}

// Per sample z_j of image i (index i*k + j): log p(x|z) and the log weight
// log w = log p(x|z) + log p(z) - log q(z|x). Each decode sees at most
// kMaxRows image-sample pairs.
struct SampleTerms {
  std::vector<double> log_px, log_w;
};

SampleTerms sample_terms(VAE& model, const Tensor& x, const Tensor& mean, const Tensor& logvar,
                         int64_t k, Philox& rng) {
  int64_t n = x.size(0), L = mean.size(1), total = n * k;
  SampleTerms out;
  for (int64_t start = 0; start < total; start += kMaxRows) {
    int64_t rows = std::min(kMaxRows, total - start);
    std::vector<int64_t> img(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) img[static_cast<size_t>(r)] = (start + r) / k;
    Tensor xr = gather_rows(x, img), m = gather_rows(mean, img), lv = gather_rows(logvar, img);
    Tensor z = reparameterize(m, lv, randn({rows, L}, rng, x.dtype(), x.device()));
    Tensor lpx = log_px_z(model.decode_logits(z), xr);
    Tensor lw = sub(add(lpx, log_normal_pdf(z, Tensor(), Tensor())), log_normal_pdf(z, m, lv));
    for (double v : lpx.to_double_vector()) out.log_px.push_back(v);
    for (double v : lw.to_double_vector()) out.log_w.push_back(v);
  }
  return out;
}

}  // namespace

Tensor VAE::loss(const Tensor& x, Philox& rng, KlMode kl) {
  Tensor eps = randn({x.size(0), latent_dim()}, rng, x.dtype(), x.device());
  return vae_loss(*this, x, eps, kl);
}

Tensor VAE::loss_backward(const Tensor& x, Philox& rng, KlMode kl) {
  Tensor eps = randn({x.size(0), latent_dim()}, rng, x.dtype(), x.device());  // as loss()
  return vae_loss_backward(*this, x, eps, kl);
}

Tensor vae_loss_backward(VAE& model, const Tensor& x, const Tensor& eps, KlMode kl) {
  const int64_t n = x.size(0);
  const int chunks = x.device() == Device::CPU && n >= 2 * kVaeChunkRows ? 2 : 1;
  // Rows [r0, r0 + rows): their loss weighted by their share of the batch, and its backward.
  auto part = [&](int64_t r0, int64_t rows) {
    const bool whole = rows == n;  // no copies, no weight
    Tensor l = vae_loss(model, whole ? x : slice_rows(x, r0, rows),
                        whole ? eps : slice_rows(eps, r0, rows), kl);
    if (!whole) l = scale(l, static_cast<double>(rows) / static_cast<double>(n));
    l.backward();
    return l.detach();
  };
  if (chunks == 1) return part(0, n);
  std::vector<Tensor> parts(static_cast<size_t>(chunks));
  backward_in_chunks(chunks, [&](int c) {
    const int64_t r0 = n * c / chunks;
    parts[static_cast<size_t>(c)] = part(r0, n * (c + 1) / chunks - r0);
  });
  NoGradGuard no_grad;
  Tensor total = parts[0];
  for (size_t c = 1; c < parts.size(); ++c) total = add(total, parts[c]);
  return total;
}

// The loss terms and the batch mean in one fused op (the same math as the
// tutorial's chain of ops; test_models checks the two agree).
Tensor vae_loss(VAE& model, const Tensor& x, const Tensor& eps, KlMode kl) {
  auto [mean, logvar] = model.encode(x);
  Tensor z = reparameterize(mean, logvar, eps);
  return vae_elbo_loss(model.decode_logits(z), x, z, mean, logvar, kl == KlMode::Analytic);
}

BoundSums vae_bounds(VAE& model, const Tensor& x, Philox& rng, int k_mc, int k_iwae) {
  if (k_mc < 0 || k_iwae < 0)
    throw std::invalid_argument("vae_bounds: sample counts must be >= 0, got k_mc " +
                                std::to_string(k_mc) + ", k_iwae " + std::to_string(k_iwae));
  NoGradGuard no_grad;
  BoundSums sums;
  int64_t n_all = x.size(0);
  for (int64_t first = 0; first < n_all; first += kMaxRows) {
    int64_t n = std::min(kMaxRows, n_all - first);
    Tensor xc = (first == 0 && n == n_all) ? x : slice_rows(x, first, n);
    auto [mean, logvar] = model.encode(xc);

    // Both ELBO estimates from the same k_mc samples per image: the mean of the
    // single-sample MC estimates, and the mean log p(x|z) minus the closed-form KL.
    if (k_mc > 0) {
      SampleTerms t = sample_terms(model, xc, mean, logvar, k_mc, rng);
      for (double v : t.log_w) sums.elbo_mc += v / k_mc;
      for (double v : t.log_px) sums.elbo_analytic += v / k_mc;
      for (double v : kl_normal(mean, logvar).to_double_vector()) sums.elbo_analytic -= v;
    }

    // IWAE: per image log (1/k) sum_j exp(lw_j), as max + log sum exp(lw_j - max), in double.
    if (k_iwae > 0) {
      std::vector<double> lw = sample_terms(model, xc, mean, logvar, k_iwae, rng).log_w;
      for (int64_t i = 0; i < n; ++i) {
        const double* w = lw.data() + i * k_iwae;
        double mx = *std::max_element(w, w + k_iwae);
        if (!std::isfinite(mx)) {  // all -inf (or a nan): nothing to stabilise
          sums.iwae += mx;
          continue;
        }
        double acc = 0;
        for (int j = 0; j < k_iwae; ++j) acc += std::exp(w[j] - mx);
        sums.iwae += mx + std::log(acc) - std::log(static_cast<double>(k_iwae));
      }
    }
  }
  return sums;
}

}  // namespace cvae
