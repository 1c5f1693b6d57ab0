// data_device.cpp: the dataset on the GPU (DeviceImages), over the runtime
// and the gather kernel of kernels/cuda.
#include <stdexcept>

#include "engine/data.h"
#include "engine/device.h"
#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
#endif

namespace cvae {

#if defined(CVAE_HAVE_CUDA)

DeviceImages::DeviceImages(const IdxImages& images)
    : count_(images.count), rows_(images.rows), cols_(images.cols) {
  pixels_ = std::make_shared<Storage>(images.pixels.size(), cuda_allocator());
  kernels::cuda::memcpy_h2d(pixels_->data, images.pixels.data(), images.pixels.size(), cuda_stream());
}

void DeviceImages::set_order(const std::vector<int64_t>& order) {
  for (int64_t i : order)
    if (i < 0 || i >= count_) throw std::out_of_range("DeviceImages: index " + std::to_string(i) + " out of range");
  size_t bytes = order.size() * sizeof(int64_t);
  if (!order_ || order_->bytes != bytes) order_ = std::make_shared<Storage>(bytes, cuda_allocator());
  kernels::cuda::memcpy_h2d(order_->data, order.data(), bytes, cuda_stream());
  order_len_ = static_cast<int64_t>(order.size());
}

Tensor DeviceImages::batch(int64_t start, int n, Binarize mode, uint64_t seed, uint64_t epoch) const {
  if (!order_ || start < 0 || n < 0 || start + n > order_len_)
    throw std::out_of_range("DeviceImages::batch: [" + std::to_string(start) + ", " +
                            std::to_string(start + n) + ") outside the order set for this epoch");
  Tensor x = Tensor::empty({n, 1, rows_, cols_}, DType::F32, Device::CUDA);
  int code = mode == Binarize::Threshold ? 0 : mode == Binarize::Dynamic ? 1 : 2;
  kernels::cuda::gather_batch(static_cast<const uint8_t*>(pixels_->data), int64_t(rows_) * cols_,
                              static_cast<const int64_t*>(order_->data) + start, n, code, seed, epoch,
                              x.data<float>(), cuda_stream());
  return x;
}

void DeviceImages::set_cursor(int64_t position, int64_t epoch) {
  if (!cursor_) cursor_ = std::make_shared<Storage>(sizeof(kernels::cuda::BatchCursor), cuda_allocator());
  cursor_upload_[0] = position;
  cursor_upload_[1] = epoch;
  static_assert(sizeof(kernels::cuda::BatchCursor) == sizeof cursor_upload_, "BatchCursor is (position, epoch)");
  kernels::cuda::memcpy_h2d(cursor_->data, cursor_upload_, sizeof cursor_upload_, cuda_stream());
}

Tensor DeviceImages::batch_at_cursor(int64_t start, int n, Binarize mode, uint64_t seed) const {
  if (!order_ || !cursor_ || start < 0 || n < 0 || start + n > order_len_)
    throw std::out_of_range("DeviceImages::batch_at_cursor: [" + std::to_string(start) + ", " +
                            std::to_string(start + n) + ") outside the order set for this epoch");
  Tensor x = Tensor::empty({n, 1, rows_, cols_}, DType::F32, Device::CUDA);
  int code = mode == Binarize::Threshold ? 0 : mode == Binarize::Dynamic ? 1 : 2;
  kernels::cuda::gather_batch_at(static_cast<const uint8_t*>(pixels_->data), int64_t(rows_) * cols_,
                                 static_cast<const int64_t*>(order_->data),
                                 static_cast<kernels::cuda::BatchCursor*>(cursor_->data), n, code, seed,
                                 x.data<float>(), cuda_stream());
  return x;
}

#else

DeviceImages::DeviceImages(const IdxImages&) {
  throw std::runtime_error("this build has no CUDA support: the dataset cannot live on a GPU");
}
void DeviceImages::set_order(const std::vector<int64_t>&) {}
Tensor DeviceImages::batch(int64_t, int, Binarize, uint64_t, uint64_t) const { return Tensor(); }
void DeviceImages::set_cursor(int64_t, int64_t) {}
Tensor DeviceImages::batch_at_cursor(int64_t, int, Binarize, uint64_t) const { return Tensor(); }

#endif

}  // namespace cvae
