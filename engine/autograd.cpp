// autograd.cpp: grad mode, node bookkeeping and the reverse sweep.
#include "engine/autograd.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <mutex>
#include <tuple>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/dispatch.h"
#include "kernels/kernels.h"

namespace cvae {
namespace {

thread_local bool t_grad_enabled = true;
std::atomic<int64_t> g_live_nodes{0};
std::atomic<int64_t> g_hand_overs{0};

// The leaves' gradients a chunk of backward_in_chunks contributes, kept out of the leaves
// themselves (which chunk 0 may be writing at the same moment on another thread): leaf ->
// (the leaf, its gradient so far). Each leaf's sum is its own, so the map's order is free.
using GradSink = std::unordered_map<TensorImpl*, std::pair<Tensor, std::shared_ptr<TensorImpl>>>;
thread_local GradSink* t_sink = nullptr;  // set while a chunk after the first runs

// Whether t's gradient goes to this thread's sink: a leaf (a parameter), while one is set.
bool sunk(const TensorImpl* t) { return t_sink != nullptr && !t->grad_fn; }

// Post-order over the nodes reachable from root: every node after its inputs.
// Owning pointers: freeing a node may drop the last other reference to an
// input that is still to be visited.
std::vector<std::shared_ptr<TensorImpl>> topological_order(const std::shared_ptr<TensorImpl>& root) {
  std::vector<std::shared_ptr<TensorImpl>> order;
  std::unordered_set<TensorImpl*> seen{root.get()};
  std::vector<std::pair<std::shared_ptr<TensorImpl>, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [impl, next] = stack.back();
    static const std::vector<Tensor> kNone;
    const std::vector<Tensor>& inputs = impl->grad_fn ? impl->grad_fn->inputs : kNone;
    if (next < inputs.size()) {
      const std::shared_ptr<TensorImpl>& child = inputs[next++].impl_ptr();
      if (child && child->grad_fn && seen.insert(child.get()).second) stack.push_back({child, 0});
    } else {
      order.push_back(impl);
      stack.pop_back();
    }
  }
  return order;
}

}  // namespace

Node::Node(std::vector<Tensor> in, BackwardFn fn) : inputs(std::move(in)), backward(std::move(fn)) {
  ++g_live_nodes;
}
Node::~Node() { --g_live_nodes; }

bool tracks_grad(const Tensor& t) {
  return t.defined() && (t.requires_grad() || !t.is_leaf());
}

int64_t live_nodes() { return g_live_nodes.load(); }
int64_t hand_overs_taken() { return g_hand_overs.load(); }

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (tracks_grad(t)) return true;
  return false;
}

Tensor attach(Tensor out, std::vector<Tensor> inputs, BackwardFn fn) {
  if (!needs_grad(inputs)) return out;
  for (const Tensor& t : inputs)
    if (t.defined() && t.impl()->grad_fn) ++t.impl()->grad_fn->uses;
  out.impl()->grad_fn = std::make_shared<Node>(std::move(inputs), std::move(fn));
  return out;
}

namespace {

// *slot += g: takes g's storage when *slot is empty; copies a shared buffer before adding.
void add_into(std::shared_ptr<TensorImpl>* slot, const Tensor& g) {
  if (!*slot) {
    *slot = g.detach().impl_ptr();  // share; copied on the first += below
    return;
  }
  Tensor acc(*slot);
  if (acc.impl()->storage.use_count() > 1) {  // copy-on-write: never add into a shared buffer
    acc = acc.clone();
    *slot = acc.impl_ptr();
  }
  CVAE_RUN_KERNEL(acc, axpy, acc.numel(), T(1), g.data<T>(), acc.data<T>());
}

void check_grad_shape(const TensorImpl* t, const Tensor& g) {
  CVAE_CHECK(g.shape() == t->shape, "backward",
                "gradient of shape " + shape_str(g.shape()) + " for a tensor of shape " +
                    shape_str(t->shape));
}

// A gradient for leaf t into this thread's sink.
void sink_grad(const Tensor& t, const Tensor& g) {
  if (!g.defined()) return;
  check_grad_shape(t.impl(), g);
  auto& entry = (*t_sink)[t.impl()];
  if (!entry.first.defined()) entry.first = t;  // keeps the leaf alive until the merge
  add_into(&entry.second, g);
}

}  // namespace

void accumulate_grad(TensorImpl* t, const Tensor& g) {
  if (!g.defined()) return;
  check_grad_shape(t, g);
  if (t->grad && t->grad_zero_pending) {
    t->grad_zero_pending = false;
    if (t->grad->storage == g.impl()->storage) return;  // written in place (grad_destination)
    if (t->grad.use_count() == 1 && t->grad->storage.use_count() == 1) {
      Tensor dst(t->grad);  // the first contribution: written, not added (g * 1 is g exactly)
      CVAE_RUN_KERNEL(dst, scale, dst.numel(), T(1), g.data<T>(), dst.data<T>());
    } else {
      t->grad = g.detach().impl_ptr();  // the kept buffer is shared: take g's, as if none
    }
    return;
  }
  add_into(&t->grad, g);
}

void backward_in_chunks(int chunks, const std::function<void(int chunk)>& run) {
  if (chunks < 1) throw std::invalid_argument("backward_in_chunks: chunks must be >= 1");
  std::vector<GradSink> sinks(static_cast<size_t>(chunks));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(chunks));
  const int most = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int threads = most >= 2 * chunks ? 1 : std::min(chunks, most);
  const bool grad_mode = t_grad_enabled;  // the caller's, on whichever thread runs a chunk
  auto one = [&](int c) {
    GradSink* const outer_sink = t_sink;
    const bool outer_mode = t_grad_enabled;
    t_sink = c == 0 ? outer_sink : &sinks[static_cast<size_t>(c)];
    t_grad_enabled = grad_mode;
    try {
      run(c);
    } catch (...) {
      errors[static_cast<size_t>(c)] = std::current_exception();
    }
    t_sink = outer_sink;
    t_grad_enabled = outer_mode;
  };
  if (threads == 1) {
    for (int c = 0; c < chunks; ++c) one(c);
  } else {
#pragma omp parallel for schedule(static) num_threads(threads)  // chunk c on thread c
    for (int c = 0; c < chunks; ++c) one(c);
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  for (const GradSink& sink : sinks)  // chunk order, whoever ran them
    for (const auto& kv : sink) {
      const auto& [leaf, g] = kv.second;
      if (t_sink) sink_grad(leaf, Tensor(g));  // inside an outer chunk: into its sink
      else accumulate_grad(leaf.impl(), Tensor(g));
    }
}

namespace {

// The seed d(loss)/d(loss) = 1. On the GPU one per dtype and shape, made once and kept
// (never freed: the allocators outlive no static), so a backward launches no fill for it;
// shared, so nothing ever writes it (accumulate_grad copies a shared gradient before
// adding). On the CPU a fresh one each time (a store, not a launch; nothing is kept).
Tensor ones_like_scalar(const Tensor& t) {
  if (t.device() == Device::CPU) {
    Tensor one = Tensor::empty(t.shape(), t.dtype(), t.device());
    one.fill_(1.0);
    return one;
  }
  static std::mutex mu;
  static auto* made = new std::map<std::tuple<int, int, Shape>, Tensor>();
  std::lock_guard<std::mutex> lock(mu);
  Tensor& one = (*made)[{static_cast<int>(t.device()), static_cast<int>(t.dtype()), t.shape()}];
  if (!one.defined()) {
    one = Tensor::empty(t.shape(), t.dtype(), t.device());
    one.fill_(1.0);
  }
  return one;
}

}  // namespace

Tensor grad_destination(const Tensor& t) {
  TensorImpl* impl = t.impl();
  if (tracks_grad(t) && !sunk(impl) && impl->grad && impl->grad_zero_pending &&
      impl->grad.use_count() == 1 && impl->grad->storage.use_count() == 1 &&
      impl->grad->shape == impl->shape && impl->grad->dtype == impl->dtype)
    return Tensor(impl->grad);
  return Tensor::empty(t.shape(), t.dtype(), t.device());
}

Tensor grad_to_add_into(const Tensor& t) {
  TensorImpl* impl = t.impl();
  if (!tracks_grad(t) || sunk(impl) || !impl->grad || impl->grad_zero_pending || impl->grad.use_count() != 1 ||
      impl->grad->storage.use_count() != 1)
    return Tensor();
  return Tensor(impl->grad);
}

void Tensor::backward() const {
  if (numel() != 1) throw std::logic_error("backward() needs a scalar, got shape " + shape_str(shape()));
  if (!tracks_grad(*this)) throw std::logic_error("backward() on a tensor that does not require grad");
  std::vector<std::shared_ptr<TensorImpl>> order = topological_order(impl_ptr());
  if (sunk(impl())) sink_grad(*this, ones_like_scalar(*this));
  else accumulate_grad(impl(), ones_like_scalar(*this));
  NoGradGuard no_grad;  // backward closures build no tape of their own
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    std::shared_ptr<TensorImpl> t = std::move(*it);  // released at the end of the iteration
    std::shared_ptr<Node> node = std::move(t->grad_fn);  // the tape is freed as we go
    const bool handed_over = node && node->hand_over && node->hand_over->taken;
    if (!node || (!t->grad && !handed_over)) continue;
    if (handed_over) ++g_hand_overs;
    std::vector<Tensor> grads = node->backward(t->grad ? Tensor(t->grad) : Tensor());
    if (grads.size() != node->inputs.size()) throw std::logic_error("backward: gradient count mismatch");
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor& in = node->inputs[i];
      if (!tracks_grad(in)) continue;
      if (sunk(in.impl())) sink_grad(in, grads[i]);
      else accumulate_grad(in.impl(), grads[i]);
    }
    t->grad.reset();  // an intermediate's gradient is not kept
  }
}

}  // namespace cvae
