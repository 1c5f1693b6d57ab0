// tensor.cpp: storage, construction, host copies and conversions of Tensor.
#include "engine/tensor.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/device.h"
#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
#endif

namespace cvae {

size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 8; }
const char* dtype_name(DType t) { return t == DType::F32 ? "float32" : "float64"; }
const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << "]";
  return os.str();
}

Storage::Storage(size_t n, Allocator* alloc) : bytes(n), allocator(alloc) {
  data = allocator->allocate(n);
}
Storage::~Storage() { allocator->deallocate(data, bytes); }

namespace {

Allocator* allocator_for(Device d) { return d == Device::CPU ? cpu_allocator() : cuda_allocator(); }

}  // namespace

void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t n) {
  if (n == 0) return;
  if (dd == Device::CPU && sd == Device::CPU) {
    std::memcpy(dst, src, n);
    return;
  }
#if defined(CVAE_HAVE_CUDA)
  auto* s = cuda_stream();
  if (dd == Device::CUDA && sd == Device::CUDA) kernels::cuda::memcpy_d2d(dst, src, n, s);
  else if (dd == Device::CUDA) kernels::cuda::memcpy_h2d(dst, src, n, s);
  else kernels::cuda::memcpy_d2h(dst, src, n, s);  // waits: the host reads dst next
#else
  throw std::runtime_error("this build has no CUDA support");
#endif
}

namespace {

// A host copy of t (t itself when it is on the CPU already).
Tensor on_host(const Tensor& t) { return t.device() == Device::CPU ? t : t.to_device(Device::CPU); }

template <typename Src>
Tensor from_host(const std::vector<Src>& v, const Shape& shape, DType dtype) {
  if (static_cast<int64_t>(v.size()) != shape_numel(shape))
    throw std::invalid_argument("from_vector: " + std::to_string(v.size()) +
                                " values for shape " + shape_str(shape));
  Tensor t = Tensor::empty(shape, dtype);
  if (dtype == DType::F32) {
    float* p = t.data<float>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
  } else {
    double* p = t.data<double>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<double>(v[i]);
  }
  return t;
}

template <typename Dst>
std::vector<Dst> to_host(const Tensor& device_tensor) {
  Tensor t = on_host(device_tensor);
  std::vector<Dst> out(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::F32) {
    const float* p = t.data<float>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Dst>(p[i]);
  } else {
    const double* p = t.data<double>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Dst>(p[i]);
  }
  return out;
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(
      static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), allocator_for(device));
  impl->shape = shape;
  impl->dtype = dtype;
  impl->device = device;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::CPU) {
    std::memset(t.raw(), 0, t.nbytes());
  } else {
#if defined(CVAE_HAVE_CUDA)
    kernels::cuda::memset_zero(t.raw(), t.nbytes(), cuda_stream());
#endif
  }
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape, DType dtype) {
  return from_host(v, shape, dtype);
}
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& shape, DType dtype) {
  return from_host(v, shape, dtype);
}

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  if (d < 0 || d >= n) throw std::out_of_range("dimension out of range for shape " + shape_str(shape()));
  return impl_->shape[static_cast<size_t>(d)];
}

template <typename T>
T* Tensor::data() const {
  constexpr DType want = std::is_same_v<T, float> ? DType::F32 : DType::F64;
  if (dtype() != want)
    throw std::runtime_error(std::string("tensor is ") + dtype_name(dtype()) + ", accessed as " +
                             dtype_name(want));
  return static_cast<T*>(raw());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;

std::vector<float> Tensor::to_float_vector() const { return to_host<float>(*this); }
std::vector<double> Tensor::to_double_vector() const { return to_host<double>(*this); }

double Tensor::item() const {
  if (numel() != 1) throw std::runtime_error("item() on a tensor of shape " + shape_str(shape()));
  Tensor h = on_host(*this);  // a GPU value: waits for the queued work that makes it
  return dtype() == DType::F32 ? static_cast<double>(*h.data<float>()) : *h.data<double>();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  copy_bytes(t.raw(), device(), raw(), device(), nbytes());
  return t;
}

Tensor Tensor::to_device(Device target) const {
  if (target == Device::CUDA && dtype() != DType::F32)
    throw std::invalid_argument("CUDA tensors are float32 only (float64 is for CPU gradient checks)");
  Tensor t = empty(shape(), dtype(), target);
  copy_bytes(t.raw(), target, raw(), device(), nbytes());
  return t;
}

Tensor Tensor::to(DType target) const {
  if (device() != Device::CPU) throw std::invalid_argument("dtype conversion is CPU only");
  if (target == dtype()) return clone();
  return target == DType::F32 ? from_host(to_double_vector(), shape(), DType::F32)
                              : from_host(to_double_vector(), shape(), DType::F64);
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  impl->device = impl_->device;
  return Tensor(std::move(impl));
}

void Tensor::copy_from(const Tensor& src) {
  if (src.shape() != shape() || src.dtype() != dtype())
    throw std::invalid_argument("copy_from: " + shape_str(src.shape()) + " " +
                                dtype_name(src.dtype()) + " into " + shape_str(shape()) + " " +
                                dtype_name(dtype()));
  copy_bytes(raw(), device(), src.raw(), src.device(), nbytes());
}

void Tensor::fill_(double value) {
  if (device() == Device::CUDA) {
#if defined(CVAE_HAVE_CUDA)
    kernels::cuda::fill(numel(), static_cast<float>(value), data<float>(), cuda_stream());
#endif
    return;
  }
  if (dtype() == DType::F32) {
    float* p = data<float>();
    for (int64_t i = 0; i < numel(); ++i) p[i] = static_cast<float>(value);
  } else {
    double* p = data<double>();
    for (int64_t i = 0; i < numel(); ++i) p[i] = value;
  }
}

Tensor& Tensor::set_requires_grad(bool on) {
  if (!is_leaf()) throw std::logic_error("set_requires_grad on a non-leaf tensor");
  impl_->requires_grad = on;
  return *this;
}

void Tensor::zero_grad() {
  impl_->grad.reset();
  impl_->grad_zero_pending = false;
}

Tensor Tensor::grad() const {
  if (impl_->grad && impl_->grad_zero_pending) {  // no contribution since Optimizer::zero_grad
    impl_->grad_zero_pending = false;
    Tensor(impl_->grad).fill_(0.0);
  }
  return Tensor(impl_->grad);
}

}  // namespace cvae
