// run.cpp: run options and progress <-> checkpoint metadata (a strict reader:
// every field present, of its type, in its range), checkpoint I/O, streams.
#include "apps/run.h"

#include <sys/stat.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/finite.h"

namespace cvae::app {
namespace {

using json = nlohmann::json;

constexpr const char* kOptimPrefix = "optim.";

// Reads the fields of one JSON object; any fault is a FormatError naming the
// file, the object and the field.
class Fields {
 public:
  Fields(const json& j, const std::string& path, const std::string& what) : j_(j), path_(path), what_(what) {
    if (!j.is_object()) fail("", "is not a JSON object");
  }
  bool has(const char* key) const { return j_.contains(key); }
  const json& at(const char* key) const {
    if (!j_.contains(key)) fail(key, "is missing");
    return j_[key];
  }
  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const json& v = at(key);
    if (!v.is_number_integer()) fail(key, "is not an integer");
    bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi) : true;
    int64_t value = in_range ? v.get<int64_t>() : 0;
    if (!in_range || value < lo || value > hi)
      fail(key, "is " + v.dump() + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return value;
  }
  uint64_t unsigned64(const char* key) const {
    const json& v = at(key);
    if (!v.is_number_unsigned()) fail(key, "is not a non-negative integer");
    return v.get<uint64_t>();
  }
  // A finite number in [lo, hi] (or (lo, hi] when lo_open).
  double real(const char* key, double lo, double hi, bool lo_open = false) const {
    const json& v = at(key);
    if (!v.is_number()) fail(key, "is not a number");
    double d = v.get<double>();
    if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo)) {
      char range[64];
      std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
      fail(key, "is " + v.dump() + ", outside " + range);
    }
    return d;
  }
  std::string text(const char* key) const {
    const json& v = at(key);
    if (!v.is_string()) fail(key, "is not a string");
    return v.get<std::string>();
  }
  // A string turned into a value by parse (which throws std::invalid_argument).
  template <typename F>
  auto choice(const char* key, F parse) const {
    try {
      return parse(text(key));
    } catch (const std::invalid_argument& e) {
      fail(key, e.what());
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& fault) const {
    throw FormatError(path_ + ": __metadata__ '" + what_ + "'" + (key.empty() ? "" : " field '" + key + "'") +
                      " " + fault);
  }

 private:
  const json& j_;
  const std::string& path_;
  std::string what_;
};

json config_to_json(const RunConfig& c) {
  char checksum[16];
  std::snprintf(checksum, sizeof checksum, "%08" PRIx32, c.data.checksum);
  return {{"model", c.model.kind},
          {"latent_dim", c.model.latent_dim},
          {"recon", recon_name(c.model.recon)},
          {"data_dir", c.data_dir},
          {"dataset", c.dataset},
          {"data", {{"train_images", c.data.train_images}, {"test_images", c.data.test_images}, {"checksum", checksum}}},
          {"limit_train", c.limit_train},
          {"limit_test", c.limit_test},
          {"binarization", binarize_name(c.binarize)},
          {"kl", kl_name(c.kl)},
          {"batch_size", c.batch_size},
          {"lr", c.lr},
          {"adam", {{"beta1", c.beta1}, {"beta2", c.beta2}, {"eps", c.eps}}},
          {"seed", c.seed},
          {"epochs", c.epochs},
          {"on_nonfinite", policy_name(c.on_nonfinite)}};
}

// Version 1 checkpoints lack the data identity, the limits, Adam's constants,
// the epoch target and the policy: they read with the defaults (and are not
// resumable: see training_run.cpp).
RunConfig config_from_json(const json& j, const std::string& path, int version) {
  Fields f(j, path, "config");
  RunConfig c;
  c.model.kind = f.text("model");
  if (c.model.kind != "cvae" && c.model.kind != "vae-mlp" && c.model.kind != "ae-conv" && c.model.kind != "ae-mlp")
    f.fail("model", "is '" + c.model.kind + "', not one of cvae, vae-mlp, ae-conv, ae-mlp");
  c.model.latent_dim = static_cast<int>(f.integer("latent_dim", 1, range::kLatentMax));
  c.model.recon = f.choice("recon", parse_recon);
  c.data_dir = f.text("data_dir");
  c.dataset = f.text("dataset");
  c.binarize = f.choice("binarization", parse_binarize);
  c.kl = f.choice("kl", parse_kl);
  c.batch_size = static_cast<int>(f.integer("batch_size", 1, range::kBatchMax));
  c.lr = f.real("lr", 0, range::kLrMax, true);
  c.seed = f.unsigned64("seed");
  if (version < 2) {
    c.epochs = 1;
    return c;
  }
  Fields d(f.at("data"), path, "config.data");
  c.data.train_images = d.integer("train_images", 1, range::kImagesMax);
  c.data.test_images = d.integer("test_images", 1, range::kImagesMax);
  std::string sum = d.text("checksum");
  char* end = nullptr;
  unsigned long v = std::strtoul(sum.c_str(), &end, 16);
  if (sum.size() != 8 || *end != '\0' || sum.find_first_not_of("0123456789abcdef") != std::string::npos)
    d.fail("checksum", "is '" + sum + "', not 8 hex digits");
  c.data.checksum = static_cast<uint32_t>(v);
  c.limit_train = f.integer("limit_train", 0, range::kImagesMax);
  c.limit_test = f.integer("limit_test", 0, range::kImagesMax);
  Fields a(f.at("adam"), path, "config.adam");
  c.beta1 = a.real("beta1", 0, 1);
  c.beta2 = a.real("beta2", 0, 1);
  if (c.beta1 >= 1 || c.beta2 >= 1) a.fail("beta1", "and beta2 must be below 1");
  c.eps = a.real("eps", 0, 1, true);
  c.epochs = static_cast<int>(f.integer("epochs", 1, range::kEpochsMax));
  c.on_nonfinite = f.choice("on_nonfinite", parse_nonfinite_policy);
  return c;
}

json progress_to_json(const Progress& p, int64_t adam_steps) {
  return {{"epoch", p.epoch},
          {"step", p.step},
          {"step_in_epoch", p.step_in_epoch},
          {"noise_offset", p.noise_offset},
          {"adam_steps", adam_steps},
          {"skipped_steps", p.skipped_steps},
          {"so_far",
           {{"loss_sum", p.so_far.loss_sum},
            {"loss_count", p.so_far.loss_count},
            {"images", p.so_far.images},
            {"skipped", p.so_far.skipped},
            {"seconds", p.so_far.seconds}}}};
}

void progress_from_json(const json& j, const std::string& path, int version, RunState& s) {
  Fields f(j, path, "progress");
  const int64_t big = int64_t{1} << 62;
  Progress& p = s.progress;
  p.epoch = f.integer("epoch", 0, range::kEpochsMax);
  p.step = f.integer("step", 0, big);
  p.step_in_epoch = f.integer("step_in_epoch", 0, p.step);
  p.noise_offset = f.unsigned64("noise_offset");
  s.adam_steps = f.integer("adam_steps", 0, p.step);
  if (version < 2) return;
  p.skipped_steps = f.integer("skipped_steps", 0, p.step);
  Fields e(f.at("so_far"), path, "progress.so_far");
  p.so_far.loss_count = e.integer("loss_count", 0, p.step_in_epoch);
  p.so_far.images = e.integer("images", 0, big);
  p.so_far.skipped = e.integer("skipped", 0, p.step_in_epoch);
  // A loss sum is a sum of finite losses: any finite value, either sign.
  p.so_far.loss_sum = e.real("loss_sum", -1e300, 1e300);
  p.so_far.seconds = e.real("seconds", 0, 1e12);
}

// The metadata value `key` parsed as JSON; FormatError naming the file otherwise.
json metadata_json(const std::map<std::string, std::string>& meta, const std::string& path, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) throw FormatError(path + ": no '" + key + "' in __metadata__ (not a cvae checkpoint?)");
  json j = json::parse(it->second, nullptr, false);
  if (j.is_discarded()) throw FormatError(path + ": __metadata__ '" + key + "' is not valid JSON");
  return j;
}

}  // namespace

NonFinitePolicy parse_nonfinite_policy(const std::string& s) {
  if (s == "stop") return NonFinitePolicy::Stop;
  if (s == "skip") return NonFinitePolicy::Skip;
  throw std::invalid_argument("unknown non-finite policy '" + s + "' (valid: stop, skip)");
}

const char* policy_name(NonFinitePolicy p) { return p == NonFinitePolicy::Skip ? "skip" : "stop"; }

AdamOptions adam_options(const RunConfig& c) { return AdamOptions{c.lr, c.beta1, c.beta2, c.eps}; }

uint64_t stream_seed(uint64_t seed, Stream s) {
  // splitmix64 of (seed, purpose): well-separated Philox keys from one seed.
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(s) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string RunState::at() const {
  return "epoch " + std::to_string(progress.epoch) + ", step " + std::to_string(progress.step);
}

std::map<std::string, std::string> run_metadata(const RunState& s) {
  const RunConfig& c = s.config;
  return {{"format", kCheckpointFormat},
          {"format_version", std::to_string(RunState::kFormatVersion)},
          {"config", config_to_json(c).dump()},
          {"progress", progress_to_json(s.progress, s.adam_steps).dump()},
          {"metrics", s.metrics_line},
          // flat copies for people reading the file with other tools
          {"model", c.model.kind},
          {"latent_dim", std::to_string(c.model.latent_dim)},
          {"dataset", c.dataset},
          {"binarization", binarize_name(c.binarize)},
          {"epoch", std::to_string(s.progress.epoch)},
          {"step", std::to_string(s.progress.step)}};
}

RunState parse_run_state(const std::map<std::string, std::string>& meta, const std::string& path) {
  auto fmt = meta.find("format");
  if (fmt == meta.end() || fmt->second != kCheckpointFormat)
    throw FormatError(path + ": not a cvae checkpoint (no format=" + std::string(kCheckpointFormat) +
                      " in __metadata__; an export holds weights only)");
  RunState s;
  auto ver = meta.find("format_version");
  if (ver == meta.end() || (ver->second != "1" && ver->second != "2"))
    throw FormatError(path + ": checkpoint format_version " + (ver == meta.end() ? "missing" : "'" + ver->second + "'") +
                      " (this cvae reads 1 and 2)");
  s.format_version = ver->second[0] - '0';
  s.config = config_from_json(metadata_json(meta, path, "config"), path, s.format_version);
  progress_from_json(metadata_json(meta, path, "progress"), path, s.format_version, s);
  if (s.format_version >= 2) {
    auto m = meta.find("metrics");
    if (m == meta.end()) throw FormatError(path + ": no 'metrics' in __metadata__");
    if (!m->second.empty() && !json::parse(m->second, nullptr, false).is_object())
      throw FormatError(path + ": __metadata__ 'metrics' is not a JSON object");
    s.metrics_line = m->second;
  }
  return s;
}

void save_checkpoint(const std::string& path, const RunState& state, Model& model, const Adam* adam) {
  NamedTensors tensors = model.named_parameters();
  if (adam)
    for (auto& [name, t] : adam->state()) tensors.emplace_back(kOptimPrefix + name, t);
  // A checkpoint is only ever a good state: the last good one stays on disk.
  if (auto bad = first_nonfinite(tensors))
    throw NonFiniteError("refusing to write " + path + ": " + bad->describe());
  RunState s = state;
  s.adam_steps = adam ? adam->steps() : 0;
  save_safetensors(path, tensors, run_metadata(s));
}

Checkpoint checkpoint_from(const SafeTensors& st, const std::string& path) {
  Checkpoint ck;
  static_cast<RunState&>(ck) = parse_run_state(st.metadata, path);
  ck.path = path;
  try {
    ck.model = make_model(ck.config.model, 0);
  } catch (const std::invalid_argument& e) {
    throw FormatError(path + ": bad run configuration in __metadata__ (" + e.what() + ")");
  }
  NamedTensors model_tensors;
  for (auto& [name, t] : st.tensors) {
    if (name.rfind(kOptimPrefix, 0) == 0) ck.optimizer_state.emplace_back(name.substr(6), t);
    else model_tensors.emplace_back(name, t);
  }
  if (auto bad = first_nonfinite(st.tensors))
    throw FormatError(path + ": tensor " + bad->describe() + " (a damaged checkpoint: no command uses it)");
  try {
    ck.model->load(model_tensors);
  } catch (const std::invalid_argument& e) {
    throw FormatError(path + ": " + e.what());
  }
  return ck;
}

Checkpoint load_checkpoint(const std::string& path) { return checkpoint_from(load_safetensors(path), path); }

void restore_optimizer(const Checkpoint& ck, Adam& adam) {
  NamedTensors state = adam.state();
  for (auto& [name, dst] : state) {
    const Tensor* src = nullptr;
    for (auto& [n, t] : ck.optimizer_state)
      if (n == name) src = &t;
    if (!src) throw FormatError(ck.path + ": no optimizer state 'optim." + name + "'");
    if (src->shape() != dst.shape())
      throw FormatError(ck.path + ": optimizer state 'optim." + name + "' has shape " +
                        shape_str(src->shape()) + ", expected " + shape_str(dst.shape()));
    dst.copy_from(src->dtype() == dst.dtype() ? *src : src->to(dst.dtype()));
  }
  adam.set_steps(ck.adam_steps);
}

std::string resolve_checkpoint(const std::string& dir_or_file) {
  struct stat st {};
  if (::stat(dir_or_file.c_str(), &st) != 0) throw UsageError(dir_or_file + ": no such file or directory");
  if (S_ISDIR(st.st_mode)) {
    std::string path = dir_or_file + "/" + kCheckpointName;
    if (::stat(path.c_str(), &st) != 0) throw UsageError(dir_or_file + ": holds no " + kCheckpointName);
    return path;
  }
  return dir_or_file;
}

Dataset load_data_or_explain(const std::string& dir) {
  try {
    return load_dataset(dir);
  } catch (const DataNotFound& e) {
    throw DataNotFound(std::string(e.what()) +
                       " (install Debian's dataset-fashion-mnist: apt-get install dataset-fashion-mnist,"
                       " or pass --data DIR with MNIST-format IDX files)");
  }
}

}  // namespace cvae::app
