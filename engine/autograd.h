// autograd.h: the define-by-run tape. Each differentiable op that sees an
// input requiring grad attaches a Node to its result: the inputs plus a
// closure mapping the output gradient to input gradients. backward() walks
// the nodes in reverse topological order, accumulates (+=) into parents and
// frees the nodes it has used. Composite ops need no Node of their own. A node's
// first backward step may be done by its output's only consumer (GradHandOver).
#pragma once

#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace cvae {

// Returns one gradient per input (undefined where not needed).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

// The first step of a node's backward (its activation's backward), done instead by the
// only consumer of the node's output inside that consumer's own input-gradient kernel
// (ops_layers.cpp). The consumer then returns no gradient for that input, sets taken,
// and backward() runs the node without an output gradient; its closure reads what the
// consumer left here. Ops derive their own kinds, holding what the consumer needs.
struct GradHandOver {
  virtual ~GradHandOver() = default;
  bool taken = false;
};

struct Node {
  Node(std::vector<Tensor> in, BackwardFn fn);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  std::vector<Tensor> inputs;
  BackwardFn backward;
  std::shared_ptr<GradHandOver> hand_over;  // null: none offered
  int uses = 0;  // the nodes recorded with this node's output as an input
};

// Nodes alive now: zero after every backward() in a program without leaks.
int64_t live_nodes();

// Hand-overs taken (GradHandOver) by the backward() calls of this process so far.
int64_t hand_overs_taken();

// Whether ops record the tape on this thread (on by default).
bool grad_enabled();

// No tape is recorded inside this scope (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Whether gradients flow into t: a leaf that requires grad, or an op result
// on the tape.
bool tracks_grad(const Tensor& t);

// True when grad mode is on and any of the inputs requires grad.
bool needs_grad(const std::vector<Tensor>& inputs);

// Marks `out` as produced from `inputs` by an op with this backward, when
// needs_grad(inputs); otherwise returns `out` untouched.
Tensor attach(Tensor out, std::vector<Tensor> inputs, BackwardFn fn);

// grad(t) += g, taking g's storage when t has no gradient yet; writing g into t's kept
// buffer when that is pending zero (Optimizer::zero_grad), or nothing when g is that buffer.
void accumulate_grad(TensorImpl* t, const Tensor& g);

// Runs run(c) for every chunk c in [0, chunks), each a forward and a backward() of its own
// (a batch split into chunks of rows), on up to `chunks` threads at once (OpenMP; a
// kernel inside runs on its chunk's thread alone), or one after another with every thread
// inside the kernels when there are at least twice as many threads as chunks. Chunk 0
// accumulates into the leaves' gradients as a plain backward() does; the leaves'
// gradients from every later chunk are kept apart while the chunks run, then added in
// chunk order: the same bits for any thread count. The chunks may share leaves only: a
// tensor with a tape behind it, made before and used by two chunks, would be swept by
// both at once. Every chunk runs in the caller's grad mode; called inside a chunk, the
// inner chunks' gradients go where that chunk's go. The first exception any chunk throws
// is rethrown once all have ended (the leaves' gradients then hold what the chunks before
// it, or beside it, contributed).
void backward_in_chunks(int chunks, const std::function<void(int chunk)>& run);

// Where a backward closure writes input t's gradient: t's own kept gradient buffer when it
// is pending zero (the first contribution writes it; accumulate_grad then has nothing to
// add: no fill, no add, one kernel fewer each), else a fresh buffer of t's shape.
Tensor grad_destination(const Tensor& t);

// The gradient t holds so far, when a backward closure may add its contribution into it
// in place (defined, not pending zero, not shared with any other tensor), and then returns
// an undefined gradient for t; undefined otherwise (the closure returns a fresh one).
Tensor grad_to_add_into(const Tensor& t);

}  // namespace cvae
