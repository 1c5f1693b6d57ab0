# CvaeCuda.cmake: turn the CUDA language on when CVAE_CUDA asks for it (ON) or
# when nvcc is found (AUTO). Nothing here needs a GPU: CI compiles the CUDA
# sources on a machine without one.
set(CVAE_WITH_CUDA OFF)
if(NOT CVAE_CUDA STREQUAL "OFF")
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
message(STATUS "cvae-engine: CUDA kernels ${CVAE_WITH_CUDA}")
