# SPDX-License-Identifier: Apache-2.0
# cmake -DMODE=fetchcontent|find_package -DLOWBIT_SOURCE=... -DCONSUMER=... -DWORK=... -DCXX=... [-DVERSION=...] -P
# Configures, builds and runs examples/consumer against the lowbit checkout at LOWBIT_SOURCE; in
# find_package mode, after installing lowbit (whose bin/lowbit --version must print VERSION).
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

set(args -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release)
if(MODE STREQUAL "fetchcontent")
  list(APPEND args -DLOWBIT_CONSUMER_VIA=fetchcontent -DFETCHCONTENT_SOURCE_DIR_LOWBIT=${LOWBIT_SOURCE})
elseif(MODE STREQUAL "find_package")
  # Build and install lowbit from a configure of its own (no tests, no examples; the lowbit tool,
  # as by default), as a packager would.
  run(${CMAKE_COMMAND} -S ${LOWBIT_SOURCE} -B ${WORK}/lowbit-build -DCMAKE_CXX_COMPILER=${CXX}
      -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_EXAMPLES=OFF -DLOWBIT_INSTALL=ON)
  run(${CMAKE_COMMAND} --build ${WORK}/lowbit-build)
  run(${CMAKE_COMMAND} --install ${WORK}/lowbit-build --prefix ${WORK}/prefix)
  if(NOT EXISTS "${WORK}/prefix/include/lowbit/lowbit.hpp")
    message(FATAL_ERROR "install did not place include/lowbit/lowbit.hpp")
  endif()
  # The installed tool answers --version with the project's version.
  execute_process(COMMAND ${WORK}/prefix/bin/lowbit --version RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL "lowbit ${VERSION}\n")
    message(FATAL_ERROR "${WORK}/prefix/bin/lowbit --version: exit ${rc}, printed '${out}' (expected 'lowbit ${VERSION}')")
  endif()
  list(APPEND args -DLOWBIT_CONSUMER_VIA=find_package -DCMAKE_PREFIX_PATH=${WORK}/prefix)
else()
  message(FATAL_ERROR "MODE must be fetchcontent or find_package")
endif()
run(${CMAKE_COMMAND} -S ${CONSUMER} -B ${WORK}/consumer-build ${args})
run(${CMAKE_COMMAND} --build ${WORK}/consumer-build)
run(${WORK}/consumer-build/consumer)
