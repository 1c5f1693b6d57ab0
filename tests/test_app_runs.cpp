// test_app_runs.cpp: a training run's directory and its resume, end to end:
// a resumed run is the same run (every shaping option stored and reused, a
// changed one refused, the same dataset accepted elsewhere by content), a run
// directory is locked by the process in it, --out is checked before any work,
// no command overwrites a checkpoint or (without --force) any file, a failed
// write exits 2 and keeps the old file, metrics.jsonl never holds an epoch
// twice (kill -9 included), and a batch that does not fit in memory is refused.
#include <gtest/gtest.h>
#include <unistd.h>

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

using AppRuns = testing::SmallRunTest;
using testing::refused_with;

// Started from one directory with a relative --data and every shaping option
// set, stopped after epoch 1, resumed from elsewhere with --epochs only: the
// result is bit for bit the uninterrupted run's.
TEST_F(AppRuns, ResumeIsTheSameRunWithEveryOptionStored) {
  const std::string opts = "--batch-size 8 --lr 2e-3 --seed 5 --latent-dim 3 --kl analytic --binarize dynamic "
                           "--limit-train 40 --limit-test 12";
  fs::create_directories(root_ + "/elsewhere");
  RunResult straight = run_shell("cd " + root_ + " && " + CVAE_BINARY + " train --data data --out straight --epochs 2 " + opts);
  ASSERT_EQ(straight.code, 0) << straight.output;
  RunResult first = run_shell("cd " + root_ + " && " + CVAE_BINARY + " train --data data --out split --epochs 1 " + opts);
  ASSERT_EQ(first.code, 0) << first.output;
  auto config = testing::checkpoint_metadata(root_ + "/split/checkpoint.safetensors", "config");
  EXPECT_EQ(config.at("data_dir").get<std::string>(), fs::path(data_).lexically_normal().string());
  EXPECT_EQ(config.at("limit_train").get<int>(), 40);
  EXPECT_EQ(config.at("limit_test").get<int>(), 12);
  EXPECT_EQ(config.at("epochs").get<int>(), 1);
  RunResult resumed = run_shell("cd " + root_ + "/elsewhere && " + CVAE_BINARY + " train --resume ../split --epochs 2");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("40 train / 12 test images, batch 8"), std::string::npos) << resumed.output;
  EXPECT_TRUE(testing::same_tensors(root_ + "/straight/checkpoint.safetensors", root_ + "/split/checkpoint.safetensors"));
  auto a = testing::metrics_lines(root_ + "/straight/metrics.jsonl"), b = testing::metrics_lines(root_ + "/split/metrics.jsonl");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    for (const char* key : {"epoch", "step", "train_loss", "test_elbo", "test_elbo_analytic", "skipped_steps"})
      EXPECT_EQ(a[i].at(key), b[i].at(key)) << key << " of epoch " << i + 1;
}

// An option given with --resume that differs from the run's is refused, naming
// both values; the same value is accepted; nothing is written when refused.
TEST_F(AppRuns, ResumeRefusesOptionsThatDifferFromTheRuns) {
  std::string run = root_ + "/run";
  ASSERT_EQ(run_cvae(train_args(data_, run, 1)).code, 0);
  const std::string before = read_text(run + "/checkpoint.safetensors");
  struct Case {
    const char* given;
    const char* stored;
  };
  for (Case c : {Case{"--lr 0.01", "0.001"}, Case{"--batch-size 8", "16"}, Case{"--seed 4", "3"},
                 Case{"--latent-dim 4", "2"}, Case{"--kl analytic", "mc"}, Case{"--binarize none", "threshold"},
                 Case{"--model vae-mlp", "cvae"}, Case{"--limit-train 10", "0"}, Case{"--limit-test 5", "0"},
                 Case{"--recon l2", "bce"}}) {
    SCOPED_TRACE(c.given);
    RunResult r = run_cvae("train --resume " + run + " --epochs 2 " + c.given);
    EXPECT_TRUE(refused_with(r, {std::string(c.given) + " differs from this run's " + c.stored, "see cvae train --help"}));
  }
  EXPECT_TRUE(refused_with(run_cvae("train --resume " + run + " --epochs 2 --out " + root_ + "/other"),
                 {"is not the resumed run's directory"}));
  EXPECT_EQ(read_text(run + "/checkpoint.safetensors"), before);
  RunResult same = run_cvae("train --resume " + run + " --epochs 2 --lr 1e-3 --batch-size 16 --seed 3 --device cpu");
  EXPECT_EQ(same.code, 0) << same.output;
  EXPECT_EQ(testing::metrics_lines(run + "/metrics.jsonl").size(), 2u);
}

// --data with --resume: the same dataset elsewhere (by image counts and
// checksum) is accepted and becomes the run's; a different one is refused, and
// so is a run whose data directory went away, with the way out.
TEST_F(AppRuns, ResumeTakesTheSameDatasetElsewhereOnly) {
  std::string run = root_ + "/run";
  ASSERT_EQ(run_cvae(train_args(data_, run, 1)).code, 0);
  std::string other = root_ + "/other-data";
  testing::write_synthetic_dataset(other, 48, 20, 8);  // same sizes, other images
  EXPECT_TRUE(refused_with(run_cvae("train --resume " + run + " --epochs 2 --data " + other),
                 {other, "holds a different dataset", "from the one this run trained on", "checksum"}));
  std::string moved = root_ + "/moved-data";
  fs::rename(data_, moved);
  EXPECT_TRUE(refused_with(run_cvae("train --resume " + run + " --epochs 2"), {data_, "not found"}));
  RunResult r = run_cvae("train --resume " + run + " --epochs 2 --data " + moved);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(testing::checkpoint_metadata(run + "/checkpoint.safetensors", "config").at("data_dir"), moved);
}

// A data path the checkpoint cannot store (not UTF-8: Linux paths are bytes)
// is refused before any work, not after an epoch.
TEST_F(AppRuns, ADataPathTheCheckpointCannotHoldIsRefusedFirst) {
  std::string odd = root_ + "/odd\xff" + "name";
  fs::create_directories(odd);
  for (const auto& e : fs::directory_iterator(data_)) fs::copy_file(e.path(), odd + "/" + e.path().filename().string());
  RunResult r = run_cvae(train_args("'" + odd + "'", root_ + "/run", 1));
  EXPECT_TRUE(refused_with(r, {"the path is not valid UTF-8", "see cvae train --help"}));
  EXPECT_EQ(r.output.find("epoch 1"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(root_ + "/run"));
}

// --epochs with --resume is the new total; without it, the stored total.
TEST_F(AppRuns, ResumeEpochsIsTheTotal) {
  std::string run = root_ + "/run";
  ASSERT_EQ(run_cvae(train_args(data_, run, 1)).code, 0);
  RunResult again = run_cvae("train --resume " + run);
  EXPECT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("has already trained its 1 epochs"), std::string::npos) << again.output;
  EXPECT_EQ(testing::metrics_lines(run + "/metrics.jsonl").size(), 1u);
  ASSERT_EQ(run_cvae("train --resume " + run + " --epochs 2").code, 0);
  EXPECT_EQ(testing::metrics_lines(run + "/metrics.jsonl").size(), 2u);
  EXPECT_TRUE(refused_with(run_cvae("train --resume " + run + " --epochs 1"), {"--epochs 1 is below the 2 epochs"}));
}

// A second `cvae train` into a directory in use is refused (exit 2) naming the
// process that holds it; once that process has ended, however it ended, the
// directory is free again.
TEST_F(AppRuns, ARunDirectoryIsLockedByTheProcessInIt) {
  std::string run = root_ + "/run";
  BackgroundCvae first(train_args(data_, run, 1), "CVAE_FAILPOINT=pause@train-step:2");
  ASSERT_TRUE(first.wait_for("failpoint pause@train-step:2 reached")) << first.output();
  const std::string pid = "pid " + std::to_string(first.pid());
  EXPECT_TRUE(refused_with(run_cvae(train_args(data_, run, 1)), {run, "is in use by another cvae train", pid}));
  EXPECT_TRUE(refused_with(run_cvae("train --resume " + run), {"is in use by another cvae train", pid}));
  first.signal(SIGINT);
  RunResult r = first.finish();
  ASSERT_EQ(r.code, 130) << r.output;
  // Killed (-9) holding the lock: the kernel releases it.
  BackgroundCvae second("train --resume " + run, "CVAE_FAILPOINT=kill@train-step:1");
  EXPECT_EQ(second.finish().code, 128 + SIGKILL);
  RunResult third = run_cvae("train --resume " + run);
  EXPECT_EQ(third.code, 0) << third.output;
  EXPECT_EQ(testing::metrics_lines(run + "/metrics.jsonl").size(), 1u);
}

// An --out that cannot take files is refused before any work: no data is read
// and nothing trained. Writes that fail (here a file-size limit, as root can
// write anywhere) are what "not writable" means.
TEST_F(AppRuns, AnUnwritableOutIsRefusedBeforeAnyWork) {
  fs::create_directories(root_ + "/exists");
  for (const std::string& out : {root_ + "/exists", root_ + "/new/run"}) {
    SCOPED_TRACE(out);
    RunResult r = run_shell("ulimit -f 0; trap '' XFSZ; exec " + std::string(CVAE_BINARY) + " " +
                            train_args(data_, out, 1) + " </dev/null");
    EXPECT_TRUE(refused_with(r, {"not writable", "File too large"}));
    EXPECT_EQ(r.output.find("training "), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out + "/checkpoint.safetensors"));
  }
  testing::write_text(root_ + "/a-file", "x");
  EXPECT_TRUE(refused_with(run_cvae(train_args(data_, root_ + "/a-file/run", 1)), {"cannot create the directory"}));
  if (::geteuid() != 0) {  // mode bits bind everyone but root
    fs::permissions(root_ + "/exists", fs::perms::owner_read | fs::perms::owner_exec);
    RunResult r = run_cvae(train_args(data_, root_ + "/exists", 1));
    fs::permissions(root_ + "/exists", fs::perms::owner_all);
    EXPECT_TRUE(refused_with(r, {"not writable"}));
  }
}

// No command overwrites a checkpoint, --force or not; an existing file only
// with --force.
TEST_F(AppRuns, CommandsNeverOverwriteACheckpointNorAFileWithoutForce) {
  std::string run = root_ + "/run", ck = run + "/checkpoint.safetensors";
  ASSERT_EQ(run_cvae(train_args(data_, run, 1)).code, 0);
  const std::string before = read_text(ck);
  fs::copy_file(ck, root_ + "/copy.safetensors");
  for (const std::string& target : {ck, root_ + "/copy.safetensors"}) {
    for (std::string cmd : {"export", "sample", "reconstruct", "interpolate", "manifold"}) {
      for (const char* force : {"", " --force"}) {
        SCOPED_TRACE(cmd + " --out " + target + force);
        EXPECT_TRUE(refused_with(run_cvae(cmd + " --checkpoint " + run + " --out " + target + force),
                       {target, "is a checkpoint; it is never overwritten"}));
      }
    }
  }
  EXPECT_EQ(read_text(ck), before);
  EXPECT_EQ(read_text(root_ + "/copy.safetensors"), before);
  std::string png = root_ + "/s.png";
  testing::write_text(png, "mine");
  EXPECT_TRUE(refused_with(run_cvae("sample --checkpoint " + run + " --out " + png), {png, "already exists; pass --force"}));
  EXPECT_EQ(read_text(png), "mine");
  ASSERT_EQ(run_cvae("sample --checkpoint " + run + " --out " + png + " --force").code, 0);
  int w = 0, h = 0;
  EXPECT_TRUE(testing::png_size(png, &w, &h));
  std::string exp = root_ + "/e.safetensors";
  testing::write_text(exp, "mine");
  EXPECT_TRUE(refused_with(run_cvae("export --checkpoint " + run + " --out " + exp), {exp, "already exists; pass --force"}));
  EXPECT_EQ(read_text(exp), "mine");
  EXPECT_TRUE(refused_with(run_cvae("sample --checkpoint " + run + " --out " + root_ + "/no-dir/s.png"), {"does not exist"}));
}

// A write that fails (no space, a size limit) exits 2 naming the file, leaves
// no temporary behind and keeps what was there: the last checkpoint survives.
TEST_F(AppRuns, AFailedWriteExitsTwoAndKeepsTheOldFile) {
  std::string run = root_ + "/run", ck = run + "/checkpoint.safetensors";
  ASSERT_EQ(run_cvae(train_args(data_, run, 1)).code, 0);
  const std::string before = read_text(ck);
  auto limited = [&](int blocks, const std::string& args) {
    return run_shell("ulimit -f " + std::to_string(blocks) + "; trap '' XFSZ; exec " + CVAE_BINARY + " " + args +
                     " </dev/null");
  };
  std::string exp = root_ + "/e.safetensors";
  EXPECT_TRUE(refused_with(limited(20, "export --checkpoint " + run + " --out " + exp), {exp, "write failed (File too large)"}));
  EXPECT_FALSE(fs::exists(exp));
  RunResult r = limited(200, "train --resume " + run + " --epochs 2");
  EXPECT_TRUE(refused_with(r, {ck, "File too large"}));
  EXPECT_EQ(read_text(ck), before);
  EXPECT_EQ(testing::metrics_lines(run + "/metrics.jsonl").size(), 1u);
  for (const auto& e : fs::directory_iterator(run))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  RunResult ok = run_cvae("train --resume " + run + " --epochs 2");
  EXPECT_EQ(ok.code, 0) << ok.output;
}

// Killed (-9) between an epoch's checkpoint and its metrics line, the run
// resumes with each epoch in metrics.jsonl once and its sample image written;
// lines a run left beyond its checkpoint (and a torn line) are dropped.
TEST_F(AppRuns, MetricsNeverHoldAnEpochTwice) {
  std::string run = root_ + "/run", metrics = run + "/metrics.jsonl";
  RunResult killed = run_shell("CVAE_FAILPOINT=kill@checkpoint:2 " + std::string(CVAE_BINARY) + " " +
                               train_args(data_, run, 3) + " </dev/null");
  EXPECT_EQ(killed.code, 128 + SIGKILL) << killed.output;
  ASSERT_EQ(testing::metrics_lines(metrics).size(), 1u);
  EXPECT_FALSE(fs::exists(run + "/image_at_epoch_0002.png"));
  RunResult resumed = run_cvae("train --resume " + run);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  auto lines = testing::metrics_lines(metrics);
  ASSERT_EQ(lines.size(), 3u) << read_text(metrics);
  for (int e = 1; e <= 3; ++e) EXPECT_EQ(lines[size_t(e - 1)].at("epoch").get<int>(), e);
  EXPECT_TRUE(fs::exists(run + "/image_at_epoch_0002.png"));
  // As a run killed after its metrics line but before its checkpoint leaves it.
  std::string text = read_text(metrics);
  testing::write_text(metrics, text + "{\"epoch\":4,\"test_elbo\":-1}\n{\"epoch\":4,\"te");
  ASSERT_EQ(run_cvae("train --resume " + run + " --epochs 4").code, 0);
  lines = testing::metrics_lines(metrics);
  ASSERT_EQ(lines.size(), 4u) << read_text(metrics);
  EXPECT_EQ(lines[3].at("epoch").get<int>(), 4);
  EXPECT_NE(lines[3].at("test_elbo").get<double>(), -1.0) << "the stale line for epoch 4 survived";
}

// The memory a run needs is estimated before it allocates; one that would not
// fit is refused with the estimate and the budget, and nothing is created.
TEST_F(AppRuns, ABatchThatDoesNotFitIsRefusedWithTheEstimate) {
  std::string big = root_ + "/big";
  testing::write_synthetic_dataset(big, 400, 20, 3);
  std::string run = root_ + "/run";
  RunResult r = run_cvae("train --data " + big + " --out " + run + " --batch-size 400 --max-memory 64M");
  EXPECT_TRUE(refused_with(r, {"batch 400 needs about", "per image of the batch", "64.0 MiB allowed by --max-memory",
                     "choose a smaller --batch-size"}));
  EXPECT_FALSE(fs::exists(run));
  RunResult fits = run_cvae("train --data " + big + " --out " + run + " --batch-size 400 --epochs 1 --max-memory 2G");
  EXPECT_EQ(fits.code, 0) << fits.output;
}

}  // namespace
}  // namespace cvae
