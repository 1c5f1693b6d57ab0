// test_app.cpp: the `cvae` program end to end on a small synthetic dataset:
// every subcommand's outputs are real (PNG sizes, JSON metrics, safetensors
// names), resume repeats an uninterrupted run bitwise, and bad input gets
// exit code 2 with a message naming the file and the fault.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/device.h"
#include "engine/safetensors.h"
#include "support/app_runner.h"
#include "support/cvae_spec.h"

namespace cvae {
namespace {

using testing::fresh_dir;
using testing::png_size;
using testing::read_text;
using testing::run_cvae;
using testing::RunResult;
using testing::write_text;
namespace fs = std::filesystem;

// Small runs: 96 training images, 40 test images, batch 16, latent 2.
class App : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fresh_dir("suite");
    data_ = root_ + "/data";
    testing::write_synthetic_dataset(data_, 96, 40, 7);
    run_ = root_ + "/run";
    RunResult r = run_cvae(train_args(run_, 2));
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string train_args(const std::string& out, int epochs, const std::string& extra = "") {
    return "train --data " + data_ + " --out " + out + " --epochs " + std::to_string(epochs) +
           " --batch-size 16 --lr 1e-3 --seed 3 " + extra;
  }
  static std::string checkpoint() { return run_ + "/checkpoint.safetensors"; }
  static std::string root_, data_, run_;
};
std::string App::root_, App::data_, App::run_;

void expect_png(const std::string& path, int width, int height) {
  int w = 0, h = 0;
  ASSERT_TRUE(png_size(path, &w, &h)) << path << " is not a PNG";
  EXPECT_EQ(w, width) << path;
  EXPECT_EQ(h, height) << path;
}

TEST_F(App, TrainWritesMetricsImagesCheckpointAndCurve) {
  std::istringstream lines(read_text(run_ + "/metrics.jsonl"));
  std::string line;
  int epoch = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);  // throws (fails) if not JSON
    EXPECT_EQ(j.at("epoch").get<int>(), ++epoch);
    EXPECT_EQ(j.at("step").get<int>(), 6 * epoch);  // 96 / 16 steps per epoch
    double elbo = j.at("test_elbo").get<double>();
    EXPECT_LT(elbo, 0);
    EXPECT_GT(elbo, -1000);
    EXPECT_GT(j.at("epoch_time_s").get<double>(), 0);
  }
  EXPECT_EQ(epoch, 2);
  expect_png(run_ + "/image_at_epoch_0001.png", 4 * 28 + 5 * 2, 4 * 28 + 5 * 2);
  expect_png(run_ + "/image_at_epoch_0002.png", 4 * 28 + 5 * 2, 4 * 28 + 5 * 2);
  EXPECT_NE(read_text(run_ + "/training_curve.svg").find("<polyline"), std::string::npos);
  SafeTensors st = load_safetensors(checkpoint());
  EXPECT_EQ(st.metadata.at("model"), "cvae");
  EXPECT_EQ(st.metadata.at("epoch"), "2");
  EXPECT_NO_THROW(st.at("optim.encoder.conv1.weight.exp_avg"));
  EXPECT_NO_THROW(st.at("decoder.deconv3.bias"));
}

TEST_F(App, ResumeRepeatsAnUninterruptedRunBitwise) {
  std::string split = root_ + "/split";
  RunResult a = run_cvae(train_args(split, 1));
  ASSERT_EQ(a.code, 0) << a.output;
  RunResult b = run_cvae("train --resume " + split + " --epochs 2");
  ASSERT_EQ(b.code, 0) << b.output;
  SafeTensors straight = load_safetensors(checkpoint());
  SafeTensors resumed = load_safetensors(split + "/checkpoint.safetensors");
  ASSERT_EQ(straight.tensors.size(), resumed.tensors.size());
  for (size_t i = 0; i < straight.tensors.size(); ++i) {
    const auto& [name, t] = straight.tensors[i];
    const Tensor& u = resumed.at(name);
    ASSERT_EQ(t.nbytes(), u.nbytes()) << name;
    EXPECT_EQ(std::memcmp(t.raw(), u.raw(), t.nbytes()), 0) << name << " differs after resume";
  }
  EXPECT_EQ(straight.metadata.at("step"), resumed.metadata.at("step"));
}

// Ctrl-C mid-epoch: the step finishes, a checkpoint is written, exit 130; the
// resumed run ends bitwise where an uninterrupted one does.
TEST_F(App, InterruptedRunResumesBitwise) {
  std::string data = root_ + "/bigger";
  testing::write_synthetic_dataset(data, 3000, 20, 9);
  std::string args = "--data " + data + " --epochs 1 --batch-size 8 --lr 1e-3 --seed 4 --log-every 1000";
  std::string straight = root_ + "/straight", cut = root_ + "/cut";
  ASSERT_EQ(run_cvae("train " + args + " --out " + straight).code, 0);
  // Start in the background, interrupt after a moment, wait for the exit code.
  std::string cmd = "sh -c '" + std::string(CVAE_BINARY) + " train " + args + " --out " + cut +
                    " & pid=$!; sleep 0.8; kill -INT $pid; wait $pid; echo exit=$?' 2>&1";
  testing::RunResult r = testing::run_shell(cmd);
  ASSERT_NE(r.output.find("interrupted: checkpoint saved"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exit=130"), std::string::npos) << r.output;
  SafeTensors mid = load_safetensors(cut + "/checkpoint.safetensors");
  EXPECT_EQ(mid.metadata.at("epoch"), "0");
  RunResult resumed = run_cvae("train --resume " + cut + " --epochs 1");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  SafeTensors a = load_safetensors(straight + "/checkpoint.safetensors");
  SafeTensors b = load_safetensors(cut + "/checkpoint.safetensors");
  for (const auto& [name, t] : a.tensors)
    EXPECT_EQ(std::memcmp(t.raw(), b.at(name).raw(), t.nbytes()), 0) << name << " differs";
}

TEST_F(App, ANewRunRefusesToOverwriteAnExistingOne) {
  std::string before = read_text(checkpoint());
  RunResult r = run_cvae(train_args(run_, 1));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("already holds a run"), std::string::npos) << r.output;
  EXPECT_EQ(read_text(checkpoint()), before);
}

TEST_F(App, EvalPrintsNamedBounds) {
  RunResult r = run_cvae("eval --checkpoint " + run_ + " --k 20 --k-mc 2");
  ASSERT_EQ(r.code, 0) << r.output;
  std::map<std::string, double> v;
  std::istringstream in(r.output);
  std::string name;
  double value;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    if (ls >> name >> value) v[name] = value;
  }
  ASSERT_TRUE(v.count("elbo_mc") && v.count("elbo_analytic") && v.count("iwae_k20")) << r.output;
  EXPECT_LT(v["elbo_mc"], 0);
  EXPECT_GE(v["iwae_k20"], v["elbo_mc"] - 1.0);  // the IWAE bound is the tighter one
  RunResult j = run_cvae("eval --checkpoint " + checkpoint() + " --k 5 --json");
  ASSERT_EQ(j.code, 0) << j.output;
  auto obj = nlohmann::json::parse(j.output.substr(j.output.find('{')));
  EXPECT_TRUE(obj.contains("iwae_k5"));
  EXPECT_EQ(obj.at("images").get<int>(), 40);
}

TEST_F(App, PicturesHaveTheRightSizes) {
  std::string d = root_ + "/pics";
  fs::create_directories(d);
  ASSERT_EQ(run_cvae("sample --checkpoint " + run_ + " --n 9 --out " + d + "/s.png").code, 0);
  expect_png(d + "/s.png", 3 * 28 + 4 * 2, 3 * 28 + 4 * 2);
  ASSERT_EQ(run_cvae("reconstruct --checkpoint " + run_ + " --n 5 --out " + d + "/r.png").code, 0);
  expect_png(d + "/r.png", 5 * 28 + 6 * 2, 2 * 28 + 3 * 2);
  ASSERT_EQ(run_cvae("interpolate --checkpoint " + run_ + " --from 0 --to 3 --steps 6 --out " + d + "/i.png").code, 0);
  expect_png(d + "/i.png", 8 * 28 + 9 * 2, 28 + 2 * 2);
  ASSERT_EQ(run_cvae("manifold --checkpoint " + run_ + " --n 7 --out " + d + "/m.png").code, 0);
  expect_png(d + "/m.png", 7 * 28, 7 * 28);
}

TEST_F(App, ExportHasPyTorchNamesAndLayouts) {
  std::string out = root_ + "/export.safetensors";
  RunResult r = run_cvae("export --checkpoint " + checkpoint() + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  SafeTensors st = load_safetensors(out);
  auto expected = testing::cvae_export_layout(2);
  ASSERT_EQ(st.tensors.size(), expected.size());  // weights only: no optimizer state
  for (auto& [name, shape] : expected) EXPECT_EQ(st.at(name).shape(), shape) << name;
  for (const char* key : {"model", "latent_dim", "dataset", "binarization", "epoch", "step"})
    EXPECT_TRUE(st.metadata.count(key)) << key;
  EXPECT_EQ(st.metadata.at("latent_dim"), "2");
  EXPECT_EQ(st.metadata.at("binarization"), "threshold");
}

TEST_F(App, InfoAndHelp) {
  RunResult r = run_cvae("info --data " + data_);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("96 train, 40 test"), std::string::npos) << r.output;
  for (const char* sub : {"train", "eval", "sample", "reconstruct", "interpolate", "manifold", "export", "info"}) {
    RunResult h = run_cvae(std::string(sub) + " --help");
    EXPECT_EQ(h.code, 0) << sub;
    EXPECT_NE(h.output.find("Usage"), std::string::npos) << sub;
  }
}

// --- bad input: exit 2, one line naming the file and the fault ---------------

void expect_refused(const RunResult& r, std::initializer_list<std::string> words) {
  EXPECT_EQ(r.code, 2) << r.output;
  for (const std::string& w : words) EXPECT_NE(r.output.find(w), std::string::npos) << "no '" << w << "' in: " << r.output;
}

TEST_F(App, BadArgumentsPrintUsage) {
  expect_refused(run_cvae(""), {"Usage"});
  expect_refused(run_cvae("train --epochs -3"), {"--epochs", "Usage"});
  expect_refused(run_cvae("train --model resnet"), {"--model", "Usage"});
  expect_refused(run_cvae("frobnicate"), {"frobnicate"});
  expect_refused(run_cvae("eval"), {"--checkpoint"});
}

TEST_F(App, MissingDatasetNamesBothFixes) {
  std::string out = root_ + "/nodata";
  expect_refused(run_cvae("train --data " + root_ + "/no-such-dir --out " + out),
                 {"no-such-dir", "dataset-fashion-mnist", "--data"});
  EXPECT_FALSE(fs::exists(out + "/checkpoint.safetensors"));
}

TEST_F(App, MalformedIdxFilesAreNamed) {
  struct Case {
    const char* name;
    std::function<void(std::string&)> damage;
    const char* fault;
  };
  std::vector<Case> cases = {
      {"magic", [](std::string& s) { s[3] = 0x07; }, "magic"},
      {"truncated", [](std::string& s) { s.resize(s.size() - 100); }, "truncated"},
      {"dims", [](std::string& s) { s[11] = 0x10; }, ""},  // count no longer matches the size
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string dir = root_ + "/bad_idx_" + c.name;
    testing::write_synthetic_dataset(dir, 16, 8, 1);
    std::string file = dir + "/train-images-idx3-ubyte";
    std::string bytes = read_text(file);
    c.damage(bytes);
    write_text(file, bytes);
    expect_refused(run_cvae("train --data " + dir + " --out " + dir + "/run"), {file, c.fault});
  }
}

TEST_F(App, MalformedCheckpointsAreNamed) {
  std::string good = read_text(checkpoint());
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | uint8_t(good[size_t(i)]);
  std::string header = good.substr(8, hlen);
  auto with_header = [&](std::string h) {
    h.resize(hlen, ' ');  // keep the length so the data offsets stay valid
    return good.substr(0, 8) + h + good.substr(8 + hlen);
  };
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    size_t at = s.find(from);
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  };
  struct Case {
    const char* name;
    std::string bytes;
    const char* fault;
  };
  std::string bad_len = good;
  bad_len[7] = 0x7f;
  std::vector<Case> cases = {
      {"header_length", bad_len, "header length"},
      {"json", with_header("{\"oops"), "JSON"},
      {"dtype", with_header(replace(header, "\"F32\"", "\"Q99\"")), "dtype"},
      {"truncated", good.substr(0, good.size() - 1000), "outside"},
      {"shape", with_header(replace(header, "\"shape\":[4,2304]", "\"shape\":[2,4608]")), "shape"},
      {"offsets", with_header(replace(header, "\"data_offsets\":[0,", "\"data_offsets\":[99999999,")), "offsets"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = root_ + "/bad_" + std::string(c.name) + ".safetensors";
    write_text(path, c.bytes);
    expect_refused(run_cvae("eval --checkpoint " + path + " --k 0"), {path, c.fault});
    expect_refused(run_cvae("export --checkpoint " + path + " --out " + root_ + "/x.safetensors"), {path});
  }
  EXPECT_FALSE(fs::exists(root_ + "/x.safetensors"));
}

TEST_F(App, WrongModelForTheCommandIsRefused) {
  if (!cuda_available())  // a GPU, or the emulated one (CVAE_CUDA=EMULATE), trains
    expect_refused(run_cvae("train --device cuda --data " + data_ + " --out " + root_ + "/cuda"), {"cuda"});
  std::string ae = root_ + "/ae";
  ASSERT_EQ(run_cvae("train --model ae-mlp --latent-dim 8 --epochs 1 --batch-size 32 --data " + data_ +
                     " --out " + ae).code, 0);
  expect_refused(run_cvae("sample --checkpoint " + ae + " --out " + root_ + "/s.png"), {"VAE"});
  expect_refused(run_cvae("manifold --checkpoint " + ae + " --out " + root_ + "/m.png"), {"VAE"});
}

}  // namespace
}  // namespace cvae
