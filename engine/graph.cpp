// graph.cpp: CudaGraph over the runtime wrappers of kernels/cuda.
#include "engine/graph.h"

#include <stdexcept>

#include "engine/device.h"
#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
#endif

namespace cvae {

#if defined(CVAE_HAVE_CUDA)

CudaGraph::~CudaGraph() {
  if (exec_) kernels::cuda::graph_destroy(exec_);
}

void CudaGraph::run_in_pool(const std::function<void()>& body) {
  if (pool_ < 0) pool_ = cuda_new_pool();
  CudaPoolScope scope(pool_);
  body();
}

void CudaGraph::capture(const std::function<void()>& body) {
  if (exec_) {
    kernels::cuda::graph_destroy(exec_);
    exec_ = nullptr;
  }
  if (pool_ < 0) pool_ = cuda_new_pool();
  CudaPoolScope scope(pool_);
  kernels::cuda::graph_capture_begin(cuda_stream());
  try {
    body();
  } catch (...) {
    try {
      kernels::cuda::graph_destroy(kernels::cuda::graph_capture_end(cuda_stream()));
    } catch (...) {  // the capture is already invalid: the body's error is the one to report
    }
    throw;
  }
  exec_ = kernels::cuda::graph_capture_end(cuda_stream());
}

void CudaGraph::replay() {
  if (!exec_) throw std::logic_error("CudaGraph::replay before capture");
  kernels::cuda::graph_launch(exec_, cuda_stream());
}

#else

CudaGraph::~CudaGraph() = default;
void CudaGraph::run_in_pool(const std::function<void()>& body) { body(); }
void CudaGraph::capture(const std::function<void()>&) {
  throw std::runtime_error("this build has no CUDA support: no CUDA graphs");
}
void CudaGraph::replay() { throw std::runtime_error("this build has no CUDA support: no CUDA graphs"); }

#endif

}  // namespace cvae
