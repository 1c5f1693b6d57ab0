// cvae_spec.h: the CVAE's parameter names and PyTorch layouts as issue 3 and
// DESIGN.md state them (the export format), written once for the tests.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace cvae::testing {

inline std::vector<std::pair<std::string, Shape>> cvae_export_layout(int64_t latent) {
  return {{"encoder.conv1.weight", {32, 1, 3, 3}},   {"encoder.conv1.bias", {32}},
          {"encoder.conv2.weight", {64, 32, 3, 3}},  {"encoder.conv2.bias", {64}},
          {"encoder.fc.weight", {2 * latent, 2304}}, {"encoder.fc.bias", {2 * latent}},
          {"decoder.fc.weight", {1568, latent}},     {"decoder.fc.bias", {1568}},
          {"decoder.deconv1.weight", {32, 64, 3, 3}}, {"decoder.deconv1.bias", {64}},
          {"decoder.deconv2.weight", {64, 32, 3, 3}}, {"decoder.deconv2.bias", {32}},
          {"decoder.deconv3.weight", {32, 1, 3, 3}},  {"decoder.deconv3.bias", {1}}};
}

}  // namespace cvae::testing
