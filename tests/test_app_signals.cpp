// test_app_signals.cpp: Ctrl-C and SIGTERM, end to end, with no sleeps: each
// test waits for a line the program prints (a failpoint's "reached" line, a
// progress line) before it sends a signal. The first signal is answered at
// once and stops at the next safe point (in a training step, in training's
// evaluation, in `cvae eval`); the line "continue with: ..." is a command
// that continues the run bit for bit; a second signal exits at once and
// leaves every file whole.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

#include "support/app_runner.h"

namespace cvae {
namespace {

namespace fs = std::filesystem;
using testing::BackgroundCvae;
using testing::read_text;
using testing::run_cvae;
using testing::run_shell;
using testing::RunResult;
using testing::train_args;

using AppSignals = testing::SmallRunTest;
using testing::has_all;

// The command after "continue with: " on the line that has it.
std::string continue_command(const std::string& out) {
  size_t at = out.find("continue with: ");
  if (at == std::string::npos) return "";
  std::string rest = out.substr(at + 15);
  return rest.substr(0, rest.find('\n'));
}

// Metrics lines agree but for their times.
void expect_same_metrics(const std::string& a, const std::string& b) {
  auto x = testing::metrics_lines(a), y = testing::metrics_lines(b);
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i)
    for (const char* key : {"epoch", "step", "train_loss", "test_elbo", "test_elbo_analytic", "skipped_steps"})
      EXPECT_EQ(x[i].at(key), y[i].at(key)) << key << " of line " << i + 1;
}

// Ctrl-C inside a step: said at once, the step finishes, a checkpoint is
// written (exit 130), and the printed command continues the run to where an
// uninterrupted one ends, bit for bit.
TEST_F(AppSignals, CtrlCInAStepCheckpointsAndTheContinueLineResumesBitwise) {
  std::string straight = root_ + "/straight", cut = root_ + "/cut";
  ASSERT_EQ(run_cvae(train_args(data_, straight, 2)).code, 0);
  BackgroundCvae run(train_args(data_, cut, 2), "CVAE_FAILPOINT=pause@train-step:2");
  ASSERT_TRUE(run.wait_for("failpoint pause@train-step:2 reached")) << run.output();
  run.signal(SIGINT);
  ASSERT_TRUE(run.wait_for("cvae: Ctrl-C: stopping after the current step")) << run.output();
  RunResult r = run.finish();
  EXPECT_EQ(r.code, 130) << r.output;
  EXPECT_TRUE(has_all(r.output, {"interrupted (Ctrl-C): checkpoint saved to " + cut + "/checkpoint.safetensors at epoch 0, step 2"}));
  EXPECT_EQ(testing::checkpoint_metadata(cut + "/checkpoint.safetensors", "progress").at("step_in_epoch"), 2);
  const std::string cmd = continue_command(r.output);
  EXPECT_EQ(cmd, std::string(CVAE_BINARY) + " train --resume " + cut);
  RunResult resumed = run_shell(cmd + " </dev/null");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_TRUE(testing::same_tensors(straight + "/checkpoint.safetensors", cut + "/checkpoint.safetensors"));
  expect_same_metrics(straight + "/metrics.jsonl", cut + "/metrics.jsonl");
}

// Ctrl-C during the end-of-epoch evaluation stops between its chunks (the
// test set here is two chunks of 500 and 10): the epoch is trained, not
// evaluated, and the resumed run evaluates it as an uninterrupted one would.
TEST_F(AppSignals, CtrlCInTrainingsEvaluationStopsThereAndResumes) {
  std::string data = root_ + "/two-chunks";
  testing::write_synthetic_dataset(data, 16, 510, 4);
  std::string straight = root_ + "/straight", cut = root_ + "/cut";
  ASSERT_EQ(run_cvae(train_args(data, straight, 1)).code, 0);
  BackgroundCvae run(train_args(data, cut, 1), "CVAE_FAILPOINT=pause@eval-chunk:1");
  ASSERT_TRUE(run.wait_for("failpoint pause@eval-chunk:1 reached")) << run.output();
  run.signal(SIGINT);
  RunResult r = run.finish();
  EXPECT_EQ(r.code, 130) << r.output;
  EXPECT_TRUE(has_all(r.output, {"cvae: Ctrl-C: stopping after the current step", "checkpoint saved"}));
  EXPECT_FALSE(fs::exists(cut + "/metrics.jsonl"));
  auto progress = testing::checkpoint_metadata(cut + "/checkpoint.safetensors", "progress");
  EXPECT_EQ(progress.at("epoch"), 0);
  EXPECT_EQ(progress.at("step_in_epoch"), 1);  // all of the epoch's one step
  RunResult resumed = run_shell(continue_command(r.output) + " </dev/null");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_TRUE(testing::same_tensors(straight + "/checkpoint.safetensors", cut + "/checkpoint.safetensors"));
  expect_same_metrics(straight + "/metrics.jsonl", cut + "/metrics.jsonl");
}

// `cvae eval` stops between chunks too, reports how far it got, prints no
// bound and exits 130.
TEST_F(AppSignals, CtrlCInEvalStopsBetweenChunks) {
  std::string run = root_ + "/run";
  ASSERT_EQ(run_cvae(train_args(data_, run, 1)).code, 0);
  BackgroundCvae ev("eval --checkpoint " + run + " --k 2 --batch-size 5", "CVAE_FAILPOINT=pause@eval-chunk:1");
  ASSERT_TRUE(ev.wait_for("failpoint pause@eval-chunk:1 reached")) << ev.output();
  ev.signal(SIGINT);
  RunResult r = ev.finish();
  EXPECT_EQ(r.code, 130) << r.output;
  EXPECT_TRUE(has_all(r.output, {"cvae: Ctrl-C: stopping after the current chunk",
                        "interrupted (Ctrl-C): evaluated 5 of 20 images; nothing written"}));
  EXPECT_EQ(r.output.find("elbo_mc "), std::string::npos) << r.output;
}

// A second signal exits at once (exit 130, no checkpoint written after the
// first, even mid-step): the checkpoint on disk is the last whole one and the
// run resumes from it.
TEST_F(AppSignals, ASecondSignalExitsAtOnceLeavingFilesWhole) {
  std::string run = root_ + "/run", ck = run + "/checkpoint.safetensors";
  BackgroundCvae bg(train_args(data_, run, 2), "CVAE_FAILPOINT=stall@train-step:5");
  ASSERT_TRUE(bg.wait_for("failpoint stall@train-step:5 reached")) << bg.output();
  const std::string epoch1 = read_text(ck);
  bg.signal(SIGINT);
  ASSERT_TRUE(bg.wait_for("press Ctrl-C again to exit at once")) << bg.output();
  bg.signal(SIGINT);
  RunResult r = bg.finish();
  EXPECT_EQ(r.code, 130) << r.output;
  EXPECT_TRUE(has_all(r.output, {"cvae: second signal: exiting now"}));
  EXPECT_EQ(r.output.find("checkpoint saved"), std::string::npos) << r.output;
  EXPECT_EQ(read_text(ck), epoch1);
  EXPECT_EQ(testing::metrics_lines(run + "/metrics.jsonl").size(), 1u);
  RunResult resumed = run_cvae("train --resume " + run);
  EXPECT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(testing::metrics_lines(run + "/metrics.jsonl").size(), 2u);
}

// SIGTERM, with no failpoint at all: a run too long to end by itself gets the
// signal once its first progress line is out, and stops as for Ctrl-C (143).
TEST_F(AppSignals, SigtermStopsARunAsCtrlCDoes) {
  std::string run = root_ + "/run";
  BackgroundCvae bg(train_args(data_, run, 100000, "--log-every 1"));
  ASSERT_TRUE(bg.wait_for("epoch 1/100000 step 1/3")) << bg.output();
  bg.signal(SIGTERM);
  RunResult r = bg.finish();
  EXPECT_EQ(r.code, 143) << r.output;
  EXPECT_TRUE(has_all(r.output, {"cvae: SIGTERM: stopping after the current step", "interrupted (SIGTERM): checkpoint saved",
                        "continue with: "}));
  auto progress = testing::checkpoint_metadata(run + "/checkpoint.safetensors", "progress");
  EXPECT_GE(progress.at("step").get<int>(), 1);
}

}  // namespace
}  // namespace cvae
