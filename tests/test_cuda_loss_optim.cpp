// test_cuda_loss_optim.cpp: the CUDA loss, optimizer and batch-gather kernels
// (kernels/cuda/loss.cu, optim.cu, data.cu) against their CPU twins on odd
// shapes, outputs poisoned with NaN; determinism; Adam inside a CUDA graph.
// Every test skips with the reason when there is no GPU or no CUDA in the build.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "support/cuda_test_util.h"
#include "test_util.h"

#if defined(CVAE_HAVE_CUDA)
#include "engine/data.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/kernels.h"

namespace kc = cvae::kernels::cuda;
namespace kh = cvae::kernels::cpu;
using cvae::kernels::VaeLossShape;
using cvae::testing::all_close;
using cvae::testing::DeviceBuffer;
using cvae::testing::max_abs;
using cvae::testing::random_vector;
using cvae::testing::test_stream;

namespace {

// GPU vs CPU rule: 1e-5 relative, atol 1e-6 of the largest reference element
// (for elements that cancel to near zero among larger ones).
::testing::AssertionResult close(const std::vector<float>& got, const std::vector<float>& ref) {
  return all_close(got, ref, 1e-5, 1e-6 * max_abs(ref));
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A buffer of n floats filled with NaN (an output the kernel must overwrite).
struct Poisoned : DeviceBuffer<float> {
  explicit Poisoned(size_t n) : DeviceBuffer<float>(n) { poison(); }
};

struct Shape3 {
  int N, D, L;
};
// N in {1, 7, 33} x (D, L) in {(784, 2), (5, 50), (784, 3)}.
std::vector<Shape3> shapes() {
  std::vector<Shape3> v;
  for (int N : {1, 7, 33})
    for (auto dl : {std::pair{784, 2}, std::pair{5, 50}, std::pair{784, 3}})
      v.push_back({N, dl.first, dl.second});
  return v;
}

std::vector<float> binary_targets(size_t n, uint32_t seed) {
  auto t = random_vector<float>(n, seed, 0.0, 1.0);
  for (auto& a : t) a = a < 0.4f ? 1.0f : 0.0f;
  return t;
}

}  // namespace
#endif

TEST(CudaLoss, SigmoidCrossEntropy) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  uint32_t seed = 1;
  for (const Shape3& sh : shapes()) {
    const size_t n = static_cast<size_t>(sh.N) * sh.D;
    SCOPED_TRACE(::testing::Message() << "n " << n);
    auto logits = random_vector<float>(n, ++seed, -8.0, 8.0);
    auto t = random_vector<float>(n, ++seed, 0.0, 1.0);
    auto dl = random_vector<float>(n, ++seed, -2.0, 2.0);
    DeviceBuffer<float> d_logits(logits), d_t(t), d_dl(dl);
    Poisoned d_loss(n), d_dlogits(n), d_dt(n);
    kc::sigmoid_ce_fwd(n, d_logits.get(), d_t.get(), d_loss.get(), test_stream());
    kc::sigmoid_ce_bwd(n, d_logits.get(), d_t.get(), d_dl.get(), d_dlogits.get(), d_dt.get(),
                       test_stream());
    std::vector<float> loss(n), dlogits(n), dt(n);
    kh::sigmoid_ce_fwd<float>(n, logits.data(), t.data(), loss.data());
    kh::sigmoid_ce_bwd<float>(n, logits.data(), t.data(), dl.data(), dlogits.data(), dt.data());
    EXPECT_TRUE(close(d_loss.download(), loss));
    EXPECT_TRUE(close(d_dlogits.download(), dlogits));
    EXPECT_TRUE(close(d_dt.download(), dt));
    // One gradient at a time: the other pointer is null.
    Poisoned only_logits(n);
    kc::sigmoid_ce_bwd(n, d_logits.get(), d_t.get(), d_dl.get(), only_logits.get(), nullptr,
                       test_stream());
    EXPECT_TRUE(close(only_logits.download(), dlogits));
  }
#endif
}

TEST(CudaLoss, LogNormalPdf) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  uint32_t seed = 100;
  for (const Shape3& sh : shapes())
    for (int D : {sh.D, sh.L})
      for (bool standard : {false, true}) {  // standard: mean, logvar null (log p(z))
        SCOPED_TRACE(::testing::Message() << "N " << sh.N << " D " << D << (standard ? " N(0,1)" : ""));
        const size_t n = static_cast<size_t>(sh.N) * D;
        auto x = random_vector<float>(n, ++seed, -2.0, 2.0);
        auto m = random_vector<float>(n, ++seed, -1.5, 1.5);
        auto lv = random_vector<float>(n, ++seed, -3.0, 1.5);
        auto dout = random_vector<float>(sh.N, ++seed, -2.0, 2.0);
        DeviceBuffer<float> d_x(x), d_m(m), d_lv(lv), d_dout(dout);
        const float* pm = standard ? nullptr : d_m.get();
        const float* plv = standard ? nullptr : d_lv.get();
        Poisoned d_out(sh.N), d_dx(n), d_dm(n), d_dlv(n);
        kc::log_normal_pdf_fwd(sh.N, D, d_x.get(), pm, plv, d_out.get(), test_stream());
        kc::log_normal_pdf_bwd(sh.N, D, d_x.get(), pm, plv, d_dout.get(), d_dx.get(), d_dm.get(),
                               d_dlv.get(), test_stream());
        std::vector<float> out(sh.N), dx(n), dm(n), dlv(n);
        const float* hm = standard ? nullptr : m.data();
        const float* hlv = standard ? nullptr : lv.data();
        kh::log_normal_pdf_fwd<float>(sh.N, D, x.data(), hm, hlv, out.data());
        kh::log_normal_pdf_bwd<float>(sh.N, D, x.data(), hm, hlv, dout.data(), dx.data(), dm.data(),
                                      dlv.data());
        EXPECT_TRUE(close(d_out.download(), out));
        EXPECT_TRUE(close(d_dx.download(), dx));
        EXPECT_TRUE(close(d_dm.download(), dm));
        EXPECT_TRUE(close(d_dlv.download(), dlv));
      }
#endif
}

TEST(CudaLoss, KlNormal) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  uint32_t seed = 200;
  for (const Shape3& sh : shapes())
    for (int D : {sh.D, sh.L}) {
      SCOPED_TRACE(::testing::Message() << "N " << sh.N << " D " << D);
      const size_t n = static_cast<size_t>(sh.N) * D;
      auto m = random_vector<float>(n, ++seed, -1.5, 1.5);
      auto lv = random_vector<float>(n, ++seed, -3.0, 1.5);
      auto dout = random_vector<float>(sh.N, ++seed, -2.0, 2.0);
      DeviceBuffer<float> d_m(m), d_lv(lv), d_dout(dout);
      Poisoned d_out(sh.N), d_dm(n), d_dlv(n);
      kc::kl_normal_fwd(sh.N, D, d_m.get(), d_lv.get(), d_out.get(), test_stream());
      kc::kl_normal_bwd(sh.N, D, d_m.get(), d_lv.get(), d_dout.get(), d_dm.get(), d_dlv.get(),
                        test_stream());
      std::vector<float> out(sh.N), dm(n), dlv(n);
      kh::kl_normal_fwd<float>(sh.N, D, m.data(), lv.data(), out.data());
      kh::kl_normal_bwd<float>(sh.N, D, m.data(), lv.data(), dout.data(), dm.data(), dlv.data());
      EXPECT_TRUE(close(d_out.download(), out));
      EXPECT_TRUE(close(d_dm.download(), dm));
      EXPECT_TRUE(close(d_dlv.download(), dlv));
    }
#endif
}

TEST(CudaLoss, VaeLossMatchesCpuBothModes) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  uint32_t seed = 300;
  for (const Shape3& sh : shapes())
    for (bool analytic : {false, true})
      for (bool binary : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "N " << sh.N << " D " << sh.D << " L " << sh.L
                                          << (analytic ? " analytic" : " MC")
                                          << (binary ? " binary" : " fractional"));
        const VaeLossShape s{sh.N, sh.D, sh.L, analytic};
        const size_t nx = static_cast<size_t>(sh.N) * sh.D, nz = static_cast<size_t>(sh.N) * sh.L;
        auto logits = random_vector<float>(nx, ++seed, -8.0, 8.0);
        auto x = binary ? binary_targets(nx, ++seed) : random_vector<float>(nx, ++seed, 0.0, 1.0);
        auto z = random_vector<float>(nz, ++seed, -2.0, 2.0);
        auto m = random_vector<float>(nz, ++seed, -1.5, 1.5);
        auto lv = random_vector<float>(nz, ++seed, -3.0, 1.5);
        const std::vector<float> g{1.7f};
        DeviceBuffer<float> d_logits(logits), d_x(x), d_z(z), d_m(m), d_lv(lv), d_g(g);
        Poisoned d_loss(1), d_rows(sh.N), d_dlogits(nx), d_dz(nz), d_dm(nz), d_dlv(nz);
        kc::vae_loss_fwd(s, d_logits.get(), d_x.get(), d_z.get(), d_m.get(), d_lv.get(),
                         d_loss.get(), d_rows.get(), test_stream());
        kc::vae_loss_bwd(s, d_logits.get(), d_x.get(), d_z.get(), d_m.get(), d_lv.get(), d_g.get(),
                         d_dlogits.get(), d_dz.get(), d_dm.get(), d_dlv.get(), test_stream());
        std::vector<float> loss(1), rows(sh.N), dlogits(nx), dz(nz), dm(nz), dlv(nz);
        kh::vae_loss_fwd<float>(s, logits.data(), x.data(), z.data(), m.data(), lv.data(),
                                loss.data(), rows.data());
        kh::vae_loss_bwd<float>(s, logits.data(), x.data(), z.data(), m.data(), lv.data(), g.data(),
                                dlogits.data(), dz.data(), dm.data(), dlv.data());
        EXPECT_TRUE(close(d_loss.download(), loss));
        EXPECT_TRUE(close(d_rows.download(), rows));
        EXPECT_TRUE(close(d_dlogits.download(), dlogits));
        EXPECT_TRUE(close(d_dz.download(), dz));  // analytic: all exactly zero
        EXPECT_TRUE(close(d_dm.download(), dm));
        EXPECT_TRUE(close(d_dlv.download(), dlv));
      }
#endif
}

// Same inputs, same bits: the row trees and the batch mean have a fixed order.
TEST(CudaLoss, VaeLossIsDeterministic) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (bool analytic : {false, true}) {
    const VaeLossShape s{100, 784, 50, analytic};
    const size_t nx = 100 * 784, nz = 100 * 50;
    DeviceBuffer<float> d_logits(random_vector<float>(nx, 1, -8.0, 8.0)),
        d_x(binary_targets(nx, 2)), d_z(random_vector<float>(nz, 3, -2.0, 2.0)),
        d_m(random_vector<float>(nz, 4, -1.5, 1.5)), d_lv(random_vector<float>(nz, 5, -3.0, 1.5)),
        d_g(std::vector<float>{1.0f});
    std::vector<float> first[6];
    for (int rep = 0; rep < 2; ++rep) {
      Poisoned d_loss(1), d_rows(100), d_dlogits(nx), d_dz(nz), d_dm(nz), d_dlv(nz);
      kc::vae_loss_fwd(s, d_logits.get(), d_x.get(), d_z.get(), d_m.get(), d_lv.get(),
                       d_loss.get(), d_rows.get(), test_stream());
      kc::vae_loss_bwd(s, d_logits.get(), d_x.get(), d_z.get(), d_m.get(), d_lv.get(), d_g.get(),
                       d_dlogits.get(), d_dz.get(), d_dm.get(), d_dlv.get(), test_stream());
      std::vector<float> now[6] = {d_loss.download(),    d_rows.download(), d_dlogits.download(),
                                   d_dz.download(),      d_dm.download(),   d_dlv.download()};
      for (int k = 0; k < 6; ++k) {
        if (rep == 0) first[k] = now[k];
        else EXPECT_TRUE(same_bits(first[k], now[k])) << "output " << k;
      }
    }
  }
#endif
}

#if defined(CVAE_HAVE_CUDA)
namespace {

// Several parameter tensors of odd sizes (one empty), with their Adam state,
// on the host and on the device, plus the device table adam_step_multi reads.
struct AdamSet {
  std::vector<int64_t> sizes{1, 7, 0, 1000, 4099, 33, 300001};
  std::vector<std::vector<float>> p, g, m, v;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dp, dg, dm, dv;
  int64_t total = 0;

  explicit AdamSet(uint32_t seed) {
    for (int64_t n : sizes) {
      p.push_back(random_vector<float>(n, ++seed, -1.0, 1.0));
      g.push_back(random_vector<float>(n, ++seed, -0.5, 0.5));
      m.push_back(random_vector<float>(n, ++seed, -0.1, 0.1));
      v.push_back(random_vector<float>(n, ++seed, 0.0, 0.01));
      dp.push_back(device(p.back()));
      dg.push_back(device(g.back()));
      dm.push_back(device(m.back()));
      dv.push_back(device(v.back()));
      total += n;
    }
  }
  // An empty tensor gets a 1-element buffer that is never uploaded nor compared.
  static std::unique_ptr<DeviceBuffer<float>> device(const std::vector<float>& h) {
    return h.empty() ? std::make_unique<DeviceBuffer<float>>(size_t{1})
                     : std::make_unique<DeviceBuffer<float>>(h);
  }
  std::vector<kc::AdamTensor> table() const {
    std::vector<kc::AdamTensor> t;
    for (size_t k = 0; k < sizes.size(); ++k)
      t.push_back({dp[k]->get(), dg[k]->get(), dm[k]->get(), dv[k]->get(), sizes[k]});
    return t;
  }
  // The CPU twin, one tensor at a time.
  void cpu_step(int64_t step, double lr, double b1, double b2, double eps) {
    for (size_t k = 0; k < sizes.size(); ++k)
      kh::adam_step<float>(sizes[k], p[k].data(), g[k].data(), m[k].data(), v[k].data(), lr, b1,
                           b2, eps, step);
  }
  // optim.cu's claim: the same float operations in the same order as cpu::adam_step,
  // no contraction on either side, so bit for bit wherever pow() agrees: on the
  // emulator (both call glibc) bitwise; on a GPU, whose pow may differ in the last
  // bit of the bias corrections, to the suite's 1e-5.
  void expect_matches_cpu() const {
    for (size_t k = 0; k < sizes.size(); ++k) {
      if (sizes[k] == 0) continue;
      SCOPED_TRACE(::testing::Message() << "tensor " << k << " (" << sizes[k] << " elements)");
#if defined(CVAE_CUDA_EMULATED)
      EXPECT_TRUE(same_bits(dp[k]->download(), p[k])) << all_close(dp[k]->download(), p[k], 0, 0).message();
      EXPECT_TRUE(same_bits(dm[k]->download(), m[k])) << all_close(dm[k]->download(), m[k], 0, 0).message();
      EXPECT_TRUE(same_bits(dv[k]->download(), v[k])) << all_close(dv[k]->download(), v[k], 0, 0).message();
#else
      EXPECT_TRUE(close(dp[k]->download(), p[k]));
      EXPECT_TRUE(close(dm[k]->download(), m[k]));
      EXPECT_TRUE(close(dv[k]->download(), v[k]));
#endif
    }
  }
};

constexpr double kLr = 1e-3, kB1 = 0.9, kB2 = 0.999, kEps = 1e-7;

}  // namespace
#endif

TEST(CudaOptim, AdamMultiMatchesCpuOverThreeSteps) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  AdamSet set(7);
  DeviceBuffer<kc::AdamTensor> d_table(set.table());
  DeviceBuffer<int64_t> d_step(std::vector<int64_t>{0});
  DeviceBuffer<double> d_lr(std::vector<double>{kLr});
  for (int64_t step = 1; step <= 3; ++step) {
    // A new gradient every step.
    for (size_t k = 0; k < set.sizes.size(); ++k) {
      if (set.sizes[k] == 0) continue;
      set.g[k] = random_vector<float>(set.sizes[k], 1000 + 10 * static_cast<uint32_t>(step + k), -0.5, 0.5);
      set.dg[k]->upload(set.g[k]);
    }
    kc::adam_step_multi(d_table.get(), static_cast<int>(set.sizes.size()), set.total, d_step.get(),
                        d_lr.get(), kB1, kB2, kEps, test_stream());
    set.cpu_step(step, kLr, kB1, kB2, kEps);
    SCOPED_TRACE(::testing::Message() << "step " << step);
    set.expect_matches_cpu();
  }
  EXPECT_EQ(d_step.download()[0], 3);
#endif
}

// Captured once into a CUDA graph and replayed three times: the device step
// counter advances on each replay, so the bias corrections follow t = 1, 2, 3.
TEST(CudaOptim, AdamMultiInACapturedGraph) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  AdamSet set(77);
  DeviceBuffer<kc::AdamTensor> d_table(set.table());
  DeviceBuffer<int64_t> d_step(std::vector<int64_t>{0});
  DeviceBuffer<double> d_lr(std::vector<double>{kLr});
  kc::stream_synchronize(test_stream());  // the uploads are done before capture starts
  kc::graph_capture_begin(test_stream());
  kc::adam_step_multi(d_table.get(), static_cast<int>(set.sizes.size()), set.total, d_step.get(),
                      d_lr.get(), kB1, kB2, kEps, test_stream());
  void* graph = kc::graph_capture_end(test_stream());
  for (int64_t step = 1; step <= 3; ++step) {
    kc::graph_launch(graph, test_stream());
    set.cpu_step(step, kLr, kB1, kB2, kEps);
  }
  kc::stream_synchronize(test_stream());  // before the graph is destroyed
  kc::graph_destroy(graph);
  EXPECT_EQ(d_step.download()[0], 3);
  set.expect_matches_cpu();
#endif
}

TEST(CudaOptim, AdamMultiIsDeterministic) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  std::vector<std::vector<float>> first;
  for (int rep = 0; rep < 2; ++rep) {
    AdamSet set(5);
    DeviceBuffer<kc::AdamTensor> d_table(set.table());
    DeviceBuffer<int64_t> d_step(std::vector<int64_t>{0});
  DeviceBuffer<double> d_lr(std::vector<double>{kLr});
    for (int s = 0; s < 3; ++s) {
      kc::adam_step_multi(d_table.get(), static_cast<int>(set.sizes.size()), set.total,
                          d_step.get(), d_lr.get(), kB1, kB2, kEps, test_stream());
    }
    // Parameters and both moments of every non-empty tensor (the empty tensor's
    // 1-element placeholder is never written: comparing it would prove nothing).
    size_t out = 0;
    for (size_t k = 0; k < set.sizes.size(); ++k) {
      if (set.sizes[k] == 0) continue;
      for (const auto* buf : {set.dp[k].get(), set.dm[k].get(), set.dv[k].get()}) {
        auto now = buf->download();
        if (rep == 0) first.push_back(now);
        else EXPECT_TRUE(same_bits(first[out], now)) << "tensor " << k;
        ++out;
      }
    }
  }
#endif
}

TEST(CudaOptim, Sgd) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{100003}}) {
    auto p = random_vector<float>(n, 1, -1.0, 1.0), g = random_vector<float>(n, 2, -1.0, 1.0);
    DeviceBuffer<float> d_p(p), d_g(g);
    kc::sgd_step(n, d_p.get(), d_g.get(), 0.01, test_stream());
    kh::sgd_step<float>(n, p.data(), g.data(), 0.01);
    EXPECT_TRUE(close(d_p.download(), p)) << "n " << n;
  }
#endif
}

#if defined(CVAE_HAVE_CUDA)
namespace {

// count images of rows x cols with every byte value present (0, 127, 128, 255
// are the interesting ones for the threshold).
cvae::IdxImages make_images(int64_t count, int rows, int cols, uint32_t seed) {
  cvae::IdxImages im;
  im.count = count;
  im.rows = rows;
  im.cols = cols;
  auto r = random_vector<double>(static_cast<size_t>(count * rows * cols), seed, 0.0, 256.0);
  im.pixels.resize(r.size());
  for (size_t q = 0; q < r.size(); ++q)
    im.pixels[q] = q < 256 ? static_cast<uint8_t>(q) : static_cast<uint8_t>(r[q]);
  return im;
}

}  // namespace
#endif

// Bitwise against engine/data.cpp's CPU gather for all three modes; the dynamic
// mode with a seed using both key words, a nonzero epoch, repeated and large
// indices, and an image size that is not a multiple of 4.
TEST(CudaData, GatherBatchMatchesCpuBitwise) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  struct Case {
    int64_t count;
    int rows, cols;
  };
  for (const Case& c : {Case{1000, 28, 28}, Case{37, 3, 5}, Case{5, 1, 1}}) {
    const cvae::IdxImages im = make_images(c.count, c.rows, c.cols, 9);
    const int64_t pixels = int64_t{c.rows} * c.cols;
    std::vector<int64_t> idx;
    for (int i = 0; i < 33; ++i) idx.push_back((i * 7919 + 13) % c.count);
    idx[5] = idx[2];  // a repeat
    idx[0] = c.count - 1;
    const int n = static_cast<int>(idx.size());
    DeviceBuffer<uint8_t> d_images(im.pixels);
    DeviceBuffer<int64_t> d_idx(idx);
    const uint64_t seed = 0x0123456789ABCDEFull;
    for (uint64_t epoch : {uint64_t{0}, uint64_t{5}}) {
      for (int mode : {0, 1, 2}) {
        SCOPED_TRACE(::testing::Message() << c.rows << "x" << c.cols << " mode " << mode
                                          << " epoch " << epoch);
        const cvae::Binarize b = mode == 0   ? cvae::Binarize::Threshold
                                 : mode == 1 ? cvae::Binarize::Dynamic
                                             : cvae::Binarize::None;
        const cvae::Tensor ref = cvae::gather_batch(im, idx.data(), n, b, seed, epoch);
        const float* r = ref.data<float>();
        const std::vector<float> want(r, r + static_cast<size_t>(n) * pixels);
        Poisoned d_x(static_cast<size_t>(n) * pixels);
        kc::gather_batch(d_images.get(), pixels, d_idx.get(), n, mode, seed, epoch, d_x.get(),
                         test_stream());
        const std::vector<float> got = d_x.download();
        EXPECT_TRUE(same_bits(got, want)) << all_close(got, want, 0.0, 0.0).message();
      }
    }
  }
#endif
}

// The batch read at a cursor on the device (what a captured step gathers at each replay):
// the rows order[position ...] with the cursor's epoch, bitwise gather_batch's, and the
// cursor moved past them, so consecutive launches walk the epoch's order.
TEST(CudaData, GatherBatchAtACursorWalksTheOrder) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  const cvae::IdxImages im = make_images(50, 28, 28, 11);
  std::vector<int64_t> order;
  for (int i = 0; i < 50; ++i) order.push_back((i * 17 + 3) % 50);
  DeviceBuffer<uint8_t> d_images(im.pixels);
  DeviceBuffer<int64_t> d_order(order);
  const uint64_t seed = 77;
  for (int mode : {0, 1}) {
    DeviceBuffer<kc::BatchCursor> cursor(std::vector<kc::BatchCursor>{{5, 3}});
    int64_t position = 5;
    for (int n : {20, 7}) {
      SCOPED_TRACE(::testing::Message() << "mode " << mode << " batch of " << n << " at " << position);
      const cvae::Tensor ref = cvae::gather_batch(im, order.data() + position, n,
                                                  mode == 0 ? cvae::Binarize::Threshold : cvae::Binarize::Dynamic,
                                                  seed, 3);
      const float* r = ref.data<float>();
      const std::vector<float> want(r, r + static_cast<size_t>(n) * 784);
      Poisoned d_x(static_cast<size_t>(n) * 784);
      kc::gather_batch_at(d_images.get(), 784, d_order.get(), cursor.get(), n, mode, seed, d_x.get(), test_stream());
      EXPECT_TRUE(same_bits(d_x.download(), want));
      position += n;
      const kc::BatchCursor now = cursor.download()[0];
      EXPECT_EQ(now.position, position);
      EXPECT_EQ(now.epoch, 3);
    }
  }
#endif
}

TEST(CudaData, GatherBatchRejectsUnknownMode) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  EXPECT_THROW(kc::gather_batch(nullptr, 784, nullptr, 1, 3, 0, 0, nullptr, test_stream()),
               std::invalid_argument);
#endif
}
