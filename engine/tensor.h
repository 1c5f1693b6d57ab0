// tensor.h: the Tensor handle: shape, dtype, device, shared storage, and the
// autograd record (grad, the node that made it). Ops are free functions in
// ops.h; nothing here computes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/allocator.h"

namespace cvae {

enum class DType : uint8_t { F32, F64 };
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);

// Bytes owned through an allocator; freed by the same allocator.
struct Storage {
  Storage(size_t bytes, Allocator* alloc);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t bytes = 0;
  Allocator* allocator = nullptr;
};

struct Node;
class Tensor;

// What a Tensor handle points to. Copies of a Tensor share it (and so share
// the gradient); reshape makes a new one sharing the storage.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  // autograd record
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;    // accumulated by backward()
  std::shared_ptr<Node> grad_fn;       // null for leaves and for results of no-grad code
  // The gradient is zero, but its buffer (kept for the next backward, optim.cpp) still
  // holds old values: the first contribution writes it instead of adding, and reading it
  // before any contribution (Tensor::grad) fills it with zeros.
  bool grad_zero_pending = false;
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (an absent optional input)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Uninitialised contiguous storage from the device's allocator.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32);
  // Copies host values (converted to dtype) into a new CPU tensor.
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape,
                            DType dtype = DType::F32);
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape,
                            DType dtype = DType::F64);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl_->shape); }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->device; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  void* raw() const { return impl_->storage->data; }
  template <typename T> T* data() const;  // checks that T matches dtype()

  // Host copies, converting to the requested type (from the GPU: waits for it).
  std::vector<float> to_float_vector() const;
  std::vector<double> to_double_vector() const;
  double item() const;  // a one-element tensor's value

  Tensor clone() const;              // a deep copy, not tracked by autograd
  Tensor to(DType dtype) const;      // a converted copy (CPU), not tracked by autograd
  Tensor to_device(Device d) const;  // a copy on device d, not tracked by autograd
  Tensor detach() const;             // shares storage, no autograd history
  void copy_from(const Tensor& src); // same shape and dtype, element copy (any devices)
  void fill_(double value);

  // --- autograd ------------------------------------------------------------
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& set_requires_grad(bool on = true);
  Tensor grad() const;  // undefined until a backward (zeros after zero_grad, see TensorImpl)
  void zero_grad();                                    // drops the gradient
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  // Reverse-mode sweep from this scalar: accumulates d(this)/d(leaf) into the
  // grad of every leaf that requires grad, then frees the tape behind it.
  void backward() const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Copies n bytes between any two devices (in stream order on the GPU; a copy
// to the host waits for it).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t n);

}  // namespace cvae
