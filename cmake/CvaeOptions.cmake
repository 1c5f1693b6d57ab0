# CvaeOptions.cmake: the project's build options and per-target defaults.
option(CVAE_BUILD_TESTS "Build the GoogleTest suites" ON)
option(CVAE_BUILD_BENCHMARKS "Build the Google Benchmark programs" ON)
option(CVAE_WERROR "Treat compiler warnings as errors (CI turns this on)" OFF)
# No -march=native: the kernels pick their AVX2 / AVX-512 code at run time (kernels/cpu/isa.cpp),
# so one build runs, and runs fast, on every x86-64. CVAE_MARCH raises the baseline of the
# rest of the code, at the price of the CPUs that lack it.
set(CVAE_MARCH "" CACHE STRING "Baseline -march for all code (e.g. x86-64-v3); empty: the compiler's default (x86-64)")
set(CVAE_SANITIZE "" CACHE STRING "Sanitizers to build with: '' or 'address,undefined'")
option(CVAE_FUZZ "Build the libFuzzer targets of tests/fuzz (clang; everything gets -fsanitize=fuzzer-no-link,address,undefined)" OFF)
if(CVAE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CVAE_FUZZ=ON needs clang (e.g. CXX=clang++-14), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  set(CVAE_SANITIZE "fuzzer-no-link,address,undefined")
endif()
set(CVAE_CUDA "AUTO" CACHE STRING "Build the CUDA kernels: AUTO (when nvcc is found), ON or OFF")
set_property(CACHE CVAE_CUDA PROPERTY STRINGS AUTO ON OFF)

# Warnings, optimisation and sanitizer flags shared by every target of ours.
function(cvae_target_defaults target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wshadow -Wno-unknown-pragmas>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${CVAE_WERROR}>>:-Werror>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${CVAE_MARCH}>>:-march=${CVAE_MARCH}>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${CVAE_WERROR}>>:--Werror=all-warnings>)
  if(CVAE_SANITIZE)
    # -O1 (after the build type's -O3, so it wins): what the sanitizers' docs advise; it
    # compiles the sanitized build in 60% of the time and runs its tests about as fast.
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${CVAE_SANITIZE} -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all>)
    target_link_options(${target} PRIVATE -fsanitize=${CVAE_SANITIZE})
  endif()
endfunction()
