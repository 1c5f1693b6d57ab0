// fuzz_safetensors.cpp: the safetensors reader on arbitrary bytes and, when
// the bytes say they are a cvae checkpoint, the checkpoint loader behind it
// (run configuration, model shapes, finiteness). A FormatError is the
// expected answer to garbage; anything else is a finding, and so is a tensor
// that parses but is not what its bytes can hold.
#include <cstdint>
#include <cstdlib>

#include "apps/run.h"
#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cvae;
  try {
    SafeTensors st = parse_safetensors("input", reinterpret_cast<const char*>(data), size);
    for (const auto& [name, t] : st.tensors) {
      (void)st.at(name);
      // Its elements are its bytes, and its bytes came from the input.
      const uint64_t numel = static_cast<uint64_t>(t.numel()), width = dtype_size(t.dtype());
      if (numel > size / width || numel * width != t.nbytes()) std::abort();
    }
    auto fmt = st.metadata.find("format");
    if (fmt != st.metadata.end() && fmt->second == app::kCheckpointFormat) (void)app::checkpoint_from(st, "input");
  } catch (const FormatError&) {
  }
  return 0;
}
