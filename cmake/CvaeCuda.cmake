# CvaeCuda.cmake: how the CUDA kernels are built. CVAE_CUDA=ON or AUTO (when nvcc is
# found): nvcc compiles kernels/cuda/*.cu; nothing needs a GPU, CI compiles them on a
# machine without one. CVAE_CUDA=EMULATE: the host C++ compiler compiles the same .cu
# sources against kernels/cuda/emulator/ (the CUDA execution model on the CPU), so the
# GPU tests run everywhere. Sets CVAE_WITH_CUDA (the engine has a CUDA device) and
# CVAE_CUDA_EMULATED.
set_property(CACHE CVAE_CUDA APPEND PROPERTY STRINGS EMULATE)
set(CVAE_WITH_CUDA OFF)
set(CVAE_CUDA_EMULATED OFF)
if(CVAE_CUDA STREQUAL "EMULATE")
  # Fibers for the threads of a block: Debian's libboost-context-dev.
  find_package(Boost 1.66 REQUIRED COMPONENTS context)
  find_package(Threads REQUIRED)
  set(CVAE_WITH_CUDA ON)
  set(CVAE_CUDA_EMULATED ON)
elseif(NOT CVAE_CUDA STREQUAL "OFF")
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # sm_90: the H100/H200 we are lent. Add more with -DCMAKE_CUDA_ARCHITECTURES="80;90".
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    enable_language(CUDA)
    set(CVAE_WITH_CUDA ON)
  elseif(CVAE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "CVAE_CUDA=ON but no CUDA compiler was found (install the CUDA toolkit or set CMAKE_CUDA_COMPILER)")
  endif()
endif()
message(STATUS "cvae-engine: CUDA kernels ${CVAE_WITH_CUDA} (emulated on the CPU: ${CVAE_CUDA_EMULATED})")

# cvae_emulate_cuda_sources(files...): compile these .cu files as host C++ against the
# emulator: its cuda_runtime.h comes first on the include path, and no contraction of
# a*b+c into an FMA, as nvcc --fmad=false (explicit fmaf stays fused). On x86-64 with
# -mfma: an explicit fmaf is then one vfmadd instruction, not a call into libm that
# spills every live accumulator around it (the emulated GEMM ran 11x slower under ASan
# that way). So the emulator build needs an FMA CPU (every AVX2 one); it says so at
# start on one without (exec.cpp). The program's own builds are not affected.
set(CVAE_EMULATED_CUDA_OPTIONS -ffp-contract=off)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  list(APPEND CVAE_EMULATED_CUDA_OPTIONS -mfma)
endif()
function(cvae_emulate_cuda_sources)
  set_source_files_properties(${ARGN} DIRECTORY ${PROJECT_SOURCE_DIR} PROPERTIES
    LANGUAGE CXX COMPILE_OPTIONS "${CVAE_EMULATED_CUDA_OPTIONS}")  # CMake adds -x c++
endfunction()
