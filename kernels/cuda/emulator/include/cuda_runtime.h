// cuda_runtime.h of the CUDA emulator: what `#include <cuda_runtime.h>` finds when
// kernels/cuda/*.cu are compiled as host C++ (-DCVAE_CUDA=EMULATE): the runtime API
// and the device-language shim. Never on the include path of an nvcc build.
#pragma once

#include "kernels/cuda/emulator/cuda_api.h"
#include "kernels/cuda/emulator/device_lang.h"
