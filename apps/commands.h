// commands.h: the subcommands of `cvae`, one function each, called by
// cvae_main.cpp once the command line is parsed. Each returns the exit code.
#pragma once

#include <cstdint>
#include <string>

#include "apps/run.h"

namespace cvae::app {

struct TrainOptions {
  RunConfig config;
  int epochs = 3;
  std::string out_dir;         // empty: runs/<model> (new run) or the checkpoint's directory (resume)
  std::string resume;          // a run directory or checkpoint file
  std::string device = "auto";
  int64_t log_every = 0;       // plain progress lines every N steps (0: ten per epoch)
  int64_t limit_train = 0;     // use only the first N training images (0: all)
  int64_t limit_test = 0;      // evaluate on the first N test images (0: all)
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
};
int run_sample(const PictureOptions& opt);
int run_reconstruct(const PictureOptions& opt);
int run_interpolate(const PictureOptions& opt);
int run_manifold(const PictureOptions& opt);

int run_export(const std::string& checkpoint, const std::string& out);
int run_info(const std::string& data_dir);

}  // namespace cvae::app
