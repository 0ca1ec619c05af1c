# SPDX-License-Identifier: Apache-2.0
# Finds a CUDA compiler without failing: on PATH, through CUDACXX / CMAKE_CUDA_COMPILER, or in the
# usual toolkit locations (/usr/local/cuda/bin, $CUDA_HOME/bin, $CUDA_PATH/bin) when PATH lacks it.
# Sets LOWBIT_CUDA_FOUND. Sets CMAKE_CUDA_COMPILER only when it was unset and nvcc was found in one
# of those locations.
include_guard(GLOBAL)
include(CheckLanguage)

if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(LOWBIT_NVCC nvcc
    HINTS "$ENV{CUDA_HOME}/bin" "$ENV{CUDA_PATH}/bin" /usr/local/cuda/bin /opt/cuda/bin
    DOC "nvcc used by lowbit when CMAKE_CUDA_COMPILER is not set")
  mark_as_advanced(LOWBIT_NVCC)
  if(LOWBIT_NVCC)
    set(CMAKE_CUDA_COMPILER "${LOWBIT_NVCC}" CACHE FILEPATH "CUDA compiler")
  endif()
endif()
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(LOWBIT_CUDA_FOUND ON)
else()
  set(LOWBIT_CUDA_FOUND OFF)
  message(STATUS "lowbit: no CUDA compiler found; lowbit::cuda is not available")
endif()
