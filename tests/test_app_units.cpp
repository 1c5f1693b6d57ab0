// test_app_units.cpp: pieces of the cvae program tested in-process: the
// checkpoint metadata reader (strict: every field present, typed, in range;
// what it writes it reads back), checkpoints are never written holding NaN,
// the run directory's lock and metrics repair, sizes, and the memory
// estimate against a measured training step.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/memory.h"
#include "apps/run.h"
#include "apps/run_dir.h"
#include "engine/allocator.h"
#include "support/app_runner.h"

namespace cvae::app {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

RunState sample_state() {
  RunState s;
  s.config.data_dir = "/data/mnist";
  s.config.dataset = "mnist";
  s.config.data = {60000, 10000, 0xdeadbeef};
  s.config.limit_train = 100;
  s.config.lr = 3e-4;
  s.config.seed = 18446744073709551615ull;
  s.config.epochs = 10;
  s.config.on_nonfinite = NonFinitePolicy::Skip;
  s.progress = {2, 3750, 1, 123456789, 4, {100.5, 1, 32, 0, 1.25}};
  s.adam_steps = 3746;
  s.metrics_line = R"({"epoch":2,"test_elbo":-160.5})";
  return s;
}

TEST(RunMetadata, WhatIsWrittenIsReadBack) {
  RunState s = sample_state();
  RunState back = parse_run_state(run_metadata(s), "x");
  EXPECT_EQ(run_metadata(back), run_metadata(s));
  EXPECT_EQ(back.config.seed, s.config.seed);
  EXPECT_EQ(back.config.lr, s.config.lr);
  EXPECT_EQ(back.config.data.checksum, 0xdeadbeefu);
  EXPECT_EQ(back.progress.so_far.loss_sum, 100.5);
}

// Each fault is one FormatError naming the file, the entry and the field.
TEST(RunMetadata, EveryFieldIsCheckedForPresenceTypeAndRange) {
  struct Case {
    const char* entry;
    std::function<void(json&)> damage;
    const char* says;
  };
  std::vector<Case> cases = {
      {"config", [](json& j) { j.erase("limit_test"); }, "'config' field 'limit_test' is missing"},
      {"config", [](json& j) { j["lr"] = "fast"; }, "'config' field 'lr' is not a number"},
      {"config", [](json& j) { j["lr"] = 0.0; }, "'config' field 'lr' is 0.0, outside (0, 1]"},
      {"config", [](json& j) { j["batch_size"] = 2.5; }, "'config' field 'batch_size' is not an integer"},
      {"config", [](json& j) { j["latent_dim"] = 1e300; }, "'config' field 'latent_dim' is not an integer"},
      {"config", [](json& j) { j["latent_dim"] = 99999; }, "'config' field 'latent_dim' is 99999, outside [1, 4096]"},
      {"config", [](json& j) { j["seed"] = -1; }, "'config' field 'seed' is not a non-negative integer"},
      {"config", [](json& j) { j["model"] = "resnet"; }, "'config' field 'model' is 'resnet'"},
      {"config", [](json& j) { j["kl"] = "exact"; }, "'config' field 'kl' unknown KL form 'exact'"},
      {"config", [](json& j) { j["data"]["checksum"] = "xyz"; }, "'config.data' field 'checksum' is 'xyz'"},
      {"config", [](json& j) { j["adam"]["beta2"] = 1.0; }, "'config.adam' field 'beta1' and beta2 must be below 1"},
      {"config", [](json& j) { j["on_nonfinite"] = "ignore"; }, "'config' field 'on_nonfinite' unknown non-finite policy 'ignore'"},
      {"progress", [](json& j) { j["step_in_epoch"] = 999999; }, "'progress' field 'step_in_epoch' is 999999, outside [0, 3750]"},
      {"progress", [](json& j) { j["epoch"] = 18446744073709551615ull; }, "'progress' field 'epoch' is 18446744073709551615"},
      {"progress", [](json& j) { j["so_far"]["seconds"] = -1.0; }, "'progress.so_far' field 'seconds' is -1.0"},
      {"progress", [](json& j) { j = json::array(); }, "'progress' is not a JSON object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.says);
    auto meta = run_metadata(sample_state());
    json j = json::parse(meta[c.entry]);
    c.damage(j);
    meta[c.entry] = j.dump();
    try {
      parse_run_state(meta, "ck.safetensors");
      ADD_FAILURE() << "accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("ck.safetensors: __metadata__ ") + c.says), std::string::npos)
          << e.what();
    }
  }
  auto meta = run_metadata(sample_state());
  meta["format_version"] = "3";
  EXPECT_THROW(parse_run_state(meta, "x"), FormatError);
}

TEST(Checkpoint, IsNeverWrittenHoldingNaN) {
  std::string dir = testing::fresh_dir("units");
  RunState s = sample_state();
  auto model = make_model(s.config.model, 1);
  model->named_parameters().at(3).second.data<float>()[1] = std::nanf("");
  std::string path = dir + "/checkpoint.safetensors";
  try {
    save_checkpoint(path, s, *model, nullptr);
    ADD_FAILURE() << "written";
  } catch (const NonFiniteError& e) {
    EXPECT_NE(std::string(e.what()).find("refusing to write " + path + ": encoder.conv2.bias holds nan at element 1"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  fs::remove_all(dir);
}

TEST(RunDir, TheLockIsExclusiveAndNamesItsOwner) {
  std::string dir = testing::fresh_dir("lock");
  {
    RunDirLock first(dir);
    try {
      RunDirLock second(dir);  // a second open file description: flock conflicts, as between processes
      ADD_FAILURE() << "locked twice";
    } catch (const Refused& e) {
      EXPECT_NE(std::string(e.what()).find("in use by another cvae train (pid " + std::to_string(::getpid()) + ")"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_NO_THROW(RunDirLock again(dir));  // released with its holder
  fs::remove_all(dir);
}

TEST(RunDir, MetricsAreRepairedToOneLinePerCheckpointedEpoch) {
  std::string dir = testing::fresh_dir("metrics");
  fs::path file = fs::path(dir) / "metrics.jsonl";
  auto repaired = [&](const std::string& text, long long epoch, const std::string& own) {
    testing::write_text(file.string(), text);
    reconcile_metrics(file, epoch, own);
    return testing::read_text(file.string());
  };
  const std::string e1 = R"({"epoch":1,"v":1})", e1b = R"({"epoch":1,"v":9})", e2 = R"({"epoch":2,"v":2})",
                    e3 = R"({"epoch":3,"v":3})";
  EXPECT_EQ(repaired(e1 + "\n" + e2 + "\n", 2, e2), e1 + "\n" + e2 + "\n");           // in step: unchanged
  EXPECT_EQ(repaired(e1 + "\n" + e2 + "\n" + e3 + "\n", 2, e2), e1 + "\n" + e2 + "\n");  // ahead: dropped
  EXPECT_EQ(repaired(e1 + "\n", 2, e2), e1 + "\n" + e2 + "\n");                       // behind: the checkpoint's line
  EXPECT_EQ(repaired(e1 + "\n" + e1b + "\n" + e2 + "\n{\"epo", 2, e2), e1 + "\n" + e2 + "\n");  // twice, torn
  EXPECT_EQ(repaired("", 0, ""), "");
  fs::remove_all(dir);
}

TEST(Memory, SizesReadAndPrint) {
  EXPECT_EQ(parse_bytes("123"), 123);
  EXPECT_EQ(parse_bytes("512M"), int64_t{512} << 20);
  EXPECT_EQ(parse_bytes("1.5GiB"), int64_t{3} << 29);
  for (const char* bad : {"", "M", "-1G", "0", "nanG", "4Q", "1e30T"}) EXPECT_THROW(parse_bytes(bad), std::invalid_argument) << bad;
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(int64_t{3} << 29), "1.50 GiB");
}

// The estimate, measured at batches 2 and 4 and extrapolated, against a real
// training step at batch 64 measured the same way (the allocator's peak): an
// upper bound, and not a loose one (small batches take more per image than
// large ones in some kernels: today about 25% more).
TEST(Memory, TheEstimateMatchesAMeasuredStep) {
  RunConfig c;
  const int batch = 64;
  MemoryEstimate e = estimate_training_memory(c, batch, 1, 0);
  auto model = make_model(c.model, 1);
  int64_t params = 0;
  for (const Tensor& p : model->parameters()) params += static_cast<int64_t>(p.nbytes());
  Tensor x = Tensor::zeros({batch, 1, 28, 28});
  Philox rng{0, 0};
  const int64_t before = cpu_bytes_in_use();
  reset_cpu_bytes_peak();
  model->loss(x, rng, c.kl).backward();
  const double measured = double(cpu_bytes_peak() - before + int64_t(x.nbytes()) + 3 * params);
  EXPECT_GE(double(e.total()), measured) << "estimate " << e.total() << ", measured " << measured;
  EXPECT_LE(double(e.total()), 1.4 * measured) << "estimate " << e.total() << ", measured " << measured;
  EXPECT_GT(e.per_image, 100 << 10);  // the CVAE's activations are hundreds of KiB per image
}

}  // namespace
}  // namespace cvae::app
