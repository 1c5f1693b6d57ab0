// test_app_nonfinite.cpp: NaN and Inf, end to end. A non-finite loss or
// gradient stops training at once (exit 3) with one line naming the epoch, the
// step and the tensor, and the last good checkpoint stays, usable by every
// command; --on-nonfinite skip skips such steps and counts them in
// metrics.jsonl; a checkpoint holding NaN is refused on load, naming the
// tensor; bounds that come out NaN are an error, not a number.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "support/app_runner.h"

namespace cvae {
namespace {

namespace fs = std::filesystem;
using testing::read_text;
using testing::run_cvae;
using testing::run_shell;
using testing::RunResult;
using testing::train_args;

class AppNonFinite : public testing::SmallRunTest {
 protected:
  void SetUp() override {
    SmallRunTest::SetUp();
    run_ = root_ + "/run";
    ck_ = run_ + "/checkpoint.safetensors";
  }
  // `cvae ARGS` with a test failpoint set (failpoint.h).
  static RunResult with_failpoint(const std::string& spec, const std::string& args) {
    return run_shell("CVAE_FAILPOINT=" + spec + " " + std::string(CVAE_BINARY) + " " + args + " </dev/null");
  }
  std::string run_, ck_;
};

// A NaN gradient in epoch 2 stops the run at that step: exit 3, one line, the
// epoch-1 checkpoint untouched and good for eval, sample, export and a resume
// that skips such steps.
TEST_F(AppNonFinite, ANanGradientStopsTheRunAndKeepsTheLastGoodCheckpoint) {
  ASSERT_EQ(run_cvae(train_args(data_, run_, 1)).code, 0);
  const std::string before = read_text(ck_);
  RunResult r = with_failpoint("nan@gradient:2", "train --resume " + run_ + " --epochs 2");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_TRUE(testing::has_all(r.output, {"cvae: training stopped at epoch 2, step 5 (2 of 3 in the epoch): the gradient of "
                 "encoder.conv1.weight holds nan at element 0 of [32,1,3,3]",
                 "the last good checkpoint " + ck_ + " (epoch 1, step 3) is kept",
                 "continue past such steps with: " + std::string(CVAE_BINARY) + " train --resume " + run_ +
                     " --epochs 2 --on-nonfinite skip"}));
  EXPECT_EQ(testing::lines_of(r.output).back().rfind("cvae: training stopped", 0), 0u) << r.output;
  EXPECT_EQ(read_text(ck_), before);
  EXPECT_EQ(testing::metrics_lines(run_ + "/metrics.jsonl").size(), 1u);
  RunResult ev = run_cvae("eval --checkpoint " + run_ + " --k 0");
  EXPECT_EQ(ev.code, 0) << ev.output;
  EXPECT_EQ(run_cvae("sample --checkpoint " + run_ + " --out " + root_ + "/s.png").code, 0);
  EXPECT_EQ(run_cvae("export --checkpoint " + run_ + " --out " + root_ + "/e.safetensors").code, 0);
  // The line it printed is the command that continues.
  const std::string said = r.output.substr(r.output.find("continue past such steps with: ") + 31);
  RunResult resumed = run_shell(said.substr(0, said.find('\n')) + " </dev/null");
  EXPECT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(testing::metrics_lines(run_ + "/metrics.jsonl").size(), 2u);
}

// In the first epoch there is no checkpoint to keep; the message says so and
// the new run leaves no directory behind.
TEST_F(AppNonFinite, InTheFirstEpochNothingIsLeftBehind) {
  RunResult r = with_failpoint("nan@gradient:2", train_args(data_, run_, 2));
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_TRUE(testing::has_all(r.output, {"epoch 1, step 2 (2 of 3 in the epoch): the gradient of encoder.conv1.weight holds nan",
                 "no checkpoint was written yet"}));
  EXPECT_FALSE(fs::exists(run_));
}

// A loss that overflows (weights of 1e30: finite, so the checkpoint loads)
// stops the first step: the tensor named is the loss.
TEST_F(AppNonFinite, AnOverflowingLossStopsAtTheFirstStep) {
  ASSERT_EQ(run_cvae(train_args(data_, run_, 1)).code, 0);
  testing::poke_f32(ck_, "encoder.conv1.weight", 0, 1e30f);
  const std::string before = read_text(ck_);
  RunResult r = run_cvae("train --resume " + run_ + " --epochs 2");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_TRUE(testing::has_all(r.output, {"training stopped at epoch 2, step 4 (1 of 3 in the epoch): the loss is "}));
  EXPECT_TRUE(r.output.find("the loss is nan") != std::string::npos ||
              r.output.find("the loss is inf") != std::string::npos) << r.output;
  EXPECT_EQ(read_text(ck_), before);
  // Its bounds are NaN too: eval says so (exit 3) instead of printing a number.
  RunResult ev = run_cvae("eval --checkpoint " + run_ + " --k 5");
  EXPECT_EQ(ev.code, 3) << ev.output;
  EXPECT_TRUE(testing::has_all(ev.output, {ck_, "elbo_mc is ", "no bound to report"}));
  EXPECT_EQ(ev.output.find("elbo_mc -nan"), std::string::npos) << ev.output;
}

// --on-nonfinite skip: the step is skipped (no update: Adam's count shows it),
// said so, counted per epoch in metrics.jsonl, and the run goes on.
TEST_F(AppNonFinite, SkipSkipsTheStepAndCountsIt) {
  RunResult r = with_failpoint("nan@gradient:2", train_args(data_, run_, 2, "--on-nonfinite skip"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(testing::has_all(r.output, {"skipped epoch 1, step 2 (2 of 3 in the epoch): the gradient of encoder.conv1.weight holds nan",
                 "1 non-finite steps skipped"}));
  auto lines = testing::metrics_lines(run_ + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].at("skipped_steps").get<int>(), 1);
  EXPECT_EQ(lines[1].at("skipped_steps").get<int>(), 0);
  EXPECT_EQ(lines[1].at("step").get<int>(), 6);
  auto progress = testing::checkpoint_metadata(ck_, "progress");
  EXPECT_EQ(progress.at("adam_steps").get<int>(), 5);
  EXPECT_EQ(progress.at("skipped_steps").get<int>(), 1);
  EXPECT_TRUE(std::isfinite(lines[1].at("test_elbo").get<double>()));
}

// Every step of an epoch skipped is not training: the run stops (exit 3).
TEST_F(AppNonFinite, SkippingAWholeEpochStops) {
  ASSERT_EQ(run_cvae(train_args(data_, run_, 1)).code, 0);
  testing::poke_f32(ck_, "encoder.conv1.weight", 0, 1e30f);
  RunResult r = run_cvae("train --resume " + run_ + " --epochs 2 --on-nonfinite skip");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_TRUE(testing::has_all(r.output, {"training stopped at epoch 2: every one of its 3 steps was skipped as non-finite"}));
}

// A checkpoint holding NaN or Inf (in the model or in Adam's state) is refused
// by every command that loads it, naming the tensor and the element.
TEST_F(AppNonFinite, ANonFiniteCheckpointIsRefusedNamingTheTensor) {
  ASSERT_EQ(run_cvae(train_args(data_, run_, 1)).code, 0);
  const std::string good = read_text(ck_);
  struct Case {
    const char* tensor;
    int64_t index;
    float value;
    const char* says;
  };
  for (Case c : {Case{"decoder.fc.bias", 7, std::numeric_limits<float>::quiet_NaN(), "holds nan at element 7 of [1568]"},
                 Case{"optim.encoder.fc.weight.exp_avg_sq", 0, std::numeric_limits<float>::infinity(),
                      "holds inf at element 0 of [4,2304]"}}) {
    SCOPED_TRACE(c.tensor);
    testing::write_text(ck_, good);
    testing::poke_f32(ck_, c.tensor, c.index, c.value);
    for (const std::string& cmd : {"eval --checkpoint " + run_, "sample --checkpoint " + run_ + " --out " + root_ + "/s.png",
                                   "export --checkpoint " + run_ + " --out " + root_ + "/e.safetensors",
                                   "train --resume " + run_ + " --epochs 2"}) {
      RunResult r = run_cvae(cmd);
      EXPECT_EQ(r.code, 2) << cmd << "\n" << r.output;
      EXPECT_TRUE(testing::has_all(r.output, {ck_ + ": tensor " + c.tensor + " " + c.says}));
      EXPECT_EQ(testing::lines_of(r.output).size(), 1u) << r.output;
    }
  }
  EXPECT_FALSE(fs::exists(root_ + "/s.png"));
  EXPECT_FALSE(fs::exists(root_ + "/e.safetensors"));
}

}  // namespace
}  // namespace cvae
