// run.cpp: run configuration <-> checkpoint metadata, checkpoint I/O, streams.
#include "apps/run.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"

namespace cvae::app {
namespace {

using json = nlohmann::json;

constexpr const char* kFormat = "cvae-checkpoint";
constexpr const char* kOptimPrefix = "optim.";

json config_to_json(const RunConfig& c) {
  return {{"model", c.model.kind},       {"latent_dim", c.model.latent_dim},
          {"recon", recon_name(c.model.recon)}, {"data_dir", c.data_dir},
          {"dataset", c.dataset},        {"binarization", binarize_name(c.binarize)},
          {"kl", kl_name(c.kl)},         {"batch_size", c.batch_size},
          {"lr", c.lr},                  {"seed", c.seed}};
}

RunConfig config_from_json(const json& j) {
  RunConfig c;
  c.model.kind = j.at("model").get<std::string>();
  c.model.latent_dim = j.at("latent_dim").get<int>();
  c.model.recon = parse_recon(j.at("recon").get<std::string>());
  c.data_dir = j.at("data_dir").get<std::string>();
  c.dataset = j.at("dataset").get<std::string>();
  c.binarize = parse_binarize(j.at("binarization").get<std::string>());
  c.kl = parse_kl(j.at("kl").get<std::string>());
  c.batch_size = j.at("batch_size").get<int>();
  c.lr = j.at("lr").get<double>();
  c.seed = j.at("seed").get<uint64_t>();
  if (c.batch_size < 1 || c.model.latent_dim < 1) throw std::invalid_argument("batch_size or latent_dim < 1");
  return c;
}

// The metadata value `key` parsed as JSON; FormatError naming the file otherwise.
json metadata_json(const SafeTensors& st, const std::string& path, const std::string& key) {
  auto it = st.metadata.find(key);
  if (it == st.metadata.end()) throw FormatError(path + ": no '" + key + "' in __metadata__ (not a cvae checkpoint?)");
  json j = json::parse(it->second, nullptr, false);
  if (j.is_discarded()) throw FormatError(path + ": __metadata__ '" + key + "' is not valid JSON");
  return j;
}

}  // namespace

uint64_t stream_seed(uint64_t seed, Stream s) {
  // splitmix64 of (seed, purpose): well-separated Philox keys from one seed.
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(s) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void save_checkpoint(const std::string& path, const RunConfig& config, const Progress& progress,
                     Model& model, const Adam* adam) {
  NamedTensors tensors = model.named_parameters();
  if (adam)
    for (auto& [name, t] : adam->state()) tensors.emplace_back(kOptimPrefix + name, t);
  json prog = {{"epoch", progress.epoch},
               {"step", progress.step},
               {"step_in_epoch", progress.step_in_epoch},
               {"noise_offset", progress.noise_offset},
               {"adam_steps", adam ? adam->steps() : 0}};
  std::map<std::string, std::string> meta = {
      {"format", kFormat},
      {"format_version", "1"},
      {"config", config_to_json(config).dump()},
      {"progress", prog.dump()},
      // flat copies for people reading the file with other tools
      {"model", config.model.kind},
      {"latent_dim", std::to_string(config.model.latent_dim)},
      {"dataset", config.dataset},
      {"binarization", binarize_name(config.binarize)},
      {"epoch", std::to_string(progress.epoch)},
      {"step", std::to_string(progress.step)}};
  save_safetensors(path, tensors, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  SafeTensors st = load_safetensors(path);
  auto fmt = st.metadata.find("format");
  if (fmt == st.metadata.end() || fmt->second != kFormat)
    throw FormatError(path + ": not a cvae checkpoint (no format=" + kFormat +
                      " in __metadata__; an export holds weights only)");
  Checkpoint ck;
  ck.path = path;
  try {
    ck.config = config_from_json(metadata_json(st, path, "config"));
    json p = metadata_json(st, path, "progress");
    ck.progress.epoch = p.at("epoch").get<int64_t>();
    ck.progress.step = p.at("step").get<int64_t>();
    ck.progress.step_in_epoch = p.at("step_in_epoch").get<int64_t>();
    ck.progress.noise_offset = p.at("noise_offset").get<uint64_t>();
    ck.adam_steps = p.at("adam_steps").get<int64_t>();
    ck.model = make_model(ck.config.model, 0);
  } catch (const FormatError&) {
    throw;
  } catch (const std::exception& e) {
    throw FormatError(path + ": bad run configuration in __metadata__ (" + e.what() + ")");
  }
  NamedTensors model_tensors;
  for (auto& [name, t] : st.tensors) {
    if (name.rfind(kOptimPrefix, 0) == 0) ck.optimizer_state.emplace_back(name.substr(6), t);
    else model_tensors.emplace_back(name, t);
  }
  try {
    ck.model->load(model_tensors);
  } catch (const std::invalid_argument& e) {
    throw FormatError(path + ": " + e.what());
  }
  return ck;
}

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
