// train.cpp: `cvae train`: drives a TrainingRun (training_run.h) epoch by
// epoch. Each epoch is shuffled batches of the training set and Adam steps,
// then the test-set ELBO, then a checkpoint, the metrics line, a sample grid
// and the curve. Ctrl-C or SIGTERM stops at the next safe point with a checkpoint.
#include "apps/commands.h"
#include "apps/signals.h"
#include "apps/training_run.h"

namespace cvae::app {

int run_train(const TrainOptions& opt) {
  // First of all: from here on a signal only asks for a stop.
  StopOnSignal stop("after the current step (a checkpoint will be written)");
  std::unique_ptr<TrainingRun> run = opt.resume.empty() ? TrainingRun::open(opt) : TrainingRun::resume(opt);
  while (!run->done()) {
    if (!run->train_epoch()) return run->stop();
    std::optional<EpochEval> ev = run->evaluate();
    if (!ev) return run->stop();
    run->finish_epoch(*ev);
  }
  return run->close();
}

}  // namespace cvae::app
