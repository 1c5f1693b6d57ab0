// export_info.cpp: `cvae export` (model weights only, PyTorch names and
// layouts, for apps/python/eval_export.py and any PyTorch module with the
// same names) and `cvae info` (build, devices, datasets).
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "apps/commands.h"
#include "apps/output_file.h"
#include "engine/safetensors.h"
#include "kernels/kernels.h"
#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
#endif

namespace cvae::app {

int run_export(const std::string& checkpoint, const std::string& out, bool force) {
  const std::string path = resolve_checkpoint(checkpoint);
  check_output_file(out, force, path);
  Checkpoint ck = load_checkpoint(path);
  const RunConfig& c = ck.config;
  std::map<std::string, std::string> meta = {
      {"format", "cvae-export"},
      {"model", c.model.kind},
      {"latent_dim", std::to_string(c.model.latent_dim)},
      {"dataset", c.dataset},
      {"binarization", binarize_name(c.binarize)},
      {"epoch", std::to_string(ck.progress.epoch)},
      {"step", std::to_string(ck.progress.step)}};
  save_safetensors(out, ck.model->named_parameters(), meta);
  std::printf("wrote %s: %zu tensors of %s (latent %d), epoch %lld\n", out.c_str(),
              ck.model->named_parameters().size(), c.model.kind.c_str(), c.model.latent_dim,
              static_cast<long long>(ck.progress.epoch));
  return 0;
}

namespace {

void report_dataset(const std::string& dir) {
  try {
    Dataset d = load_dataset(dir);
    std::printf("  %-40s found: %lld train, %lld test images of %dx%d\n", dir.c_str(),
                static_cast<long long>(d.train.count), static_cast<long long>(d.test.count),
                d.train.rows, d.train.cols);
  } catch (const std::exception& e) {
    std::printf("  %-40s not usable: %s\n", dir.c_str(), e.what());
  }
}

}  // namespace

int run_info(const std::string& data_dir) {
  std::printf("cvae-engine %s\n", CVAE_VERSION);
  std::printf("build: C++17, %s, OpenMP %d, CUDA kernels %s\n", __VERSION__, _OPENMP,
#if defined(CVAE_HAVE_CUDA)
              "compiled in (sm_90)"
#else
              "not compiled in"
#endif
  );
  namespace kcpu = kernels::cpu;
  std::string paths;
  for (auto isa : {kcpu::CpuIsa::Generic, kcpu::CpuIsa::Avx2, kcpu::CpuIsa::Avx512})
    if (kcpu::cpu_isa_supported(isa))
      paths += std::string(paths.empty() ? "" : ", ") + kcpu::cpu_isa_name(isa);
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  std::printf("devices:\n  cpu: %d OpenMP threads (waiting: %s%s), kernel code path %s (this CPU runs: %s;"
              " CVAE_CPU_ISA forces one)\n",
              omp_get_max_threads(), policy ? "OMP_WAIT_POLICY=" : spin ? "GOMP_SPINCOUNT=" : "libgomp's default",
              policy ? policy : spin ? spin : "", kcpu::cpu_isa_name(kcpu::cpu_isa()), paths.c_str());
#if defined(CVAE_HAVE_CUDA)
  std::string why;
  int n = kernels::cuda::device_count(&why);
  if (n == 0) std::printf("  cuda: none (%s)\n", why.c_str());
  for (int i = 0; i < n; ++i)
    std::printf("  cuda:%d: %s\n", i, kernels::cuda::device_description(i).c_str());
#endif
  std::printf("datasets:\n");
  report_dataset(default_data_dir());
  if (std::filesystem::exists("../shared/data/mnist")) report_dataset("../shared/data/mnist");
  if (!data_dir.empty()) report_dataset(data_dir);
  return 0;
}

}  // namespace cvae::app
