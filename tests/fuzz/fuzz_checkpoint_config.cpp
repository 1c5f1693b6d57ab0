// fuzz_checkpoint_config.cpp: a checkpoint's run configuration and progress
// (the __metadata__ of a safetensors header, the input being the header's
// JSON text). A FormatError is the expected answer to garbage; what parses
// must survive a round trip: written back and read again, it is the same.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "apps/run.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cvae;
  using json = nlohmann::json;
  json header = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object() || !header.contains("__metadata__")) return 0;
  const json& m = header["__metadata__"];
  if (!m.is_object()) return 0;
  std::map<std::string, std::string> meta;
  for (auto it = m.begin(); it != m.end(); ++it)
    if (it.value().is_string()) meta[it.key()] = it.value().get<std::string>();
  app::RunState state;
  try {
    state = app::parse_run_state(meta, "input");
  } catch (const FormatError&) {
    return 0;
  }
  if (state.format_version < 2) return 0;  // version 1 lacks fields: written back it is version 2
  std::map<std::string, std::string> again = app::run_metadata(state);
  app::RunState back = app::parse_run_state(again, "round trip");  // must not throw
  if (app::run_metadata(back) != again) std::abort();
  return 0;
}
