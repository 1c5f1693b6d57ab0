// commands.h: the subcommands of `cvae`, one function each, called by
// cvae_main.cpp once the command line is parsed. Each returns the exit code.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "apps/run.h"

namespace cvae::app {

struct TrainOptions {
  RunConfig config;              // the command line's values (defaults where not given)
  std::set<std::string> given;   // the options given on the command line, e.g. "lr", "data"
  std::string out_dir;           // empty: runs/<model> (new run) or the resumed run's directory
  std::string resume;            // a run directory (or its checkpoint.safetensors)
  std::string device = "auto";
  int64_t log_every = 0;         // plain progress lines every N steps (0: ten per epoch)
  bool no_graph = false;         // GPU: each step's kernels eagerly, not one CUDA graph replayed
  int64_t max_memory = 0;        // refuse runs estimated above this many bytes (0: what is available)
  std::string program = "cvae";  // the program as invoked, for "continue with: ..." lines
};
int run_train(const TrainOptions& opt);

struct EvalOptions {
  std::string checkpoint;
  std::string data_dir;  // empty: the checkpoint's
  int k_mc = 1;          // samples per image for the ELBO estimates
  int k_iwae = 100;      // importance samples (0: skip)
  int batch_size = 500;
  uint64_t seed = 0;
  int64_t limit = 0;     // first N test images (0: all)
  bool json = false;
  std::string device = "cpu";
};
int run_eval(const EvalOptions& opt);

struct PictureOptions {
  std::string checkpoint;
  std::string data_dir;  // empty: the checkpoint's
  std::string out;       // PNG path
  int n = 0;             // images (sample, reconstruct), steps (interpolate), grid side (manifold)
  uint64_t seed = 0;
  int64_t from = 0, to = 1;  // test-image indices (interpolate)
  bool force = false;        // replace an existing --out (never a checkpoint)
};
int run_sample(const PictureOptions& opt);
int run_reconstruct(const PictureOptions& opt);
int run_interpolate(const PictureOptions& opt);
int run_manifold(const PictureOptions& opt);

int run_export(const std::string& checkpoint, const std::string& out, bool force);
int run_info(const std::string& data_dir);

}  // namespace cvae::app
