# SPDX-License-Identifier: Apache-2.0
# Runs the reader fuzzer for SECONDS seconds on a fresh seed corpus in WORK, written by SEED_WRITER
# (valid files of every layout, made by lowbit's writer).
# Usage: cmake -DFUZZER=<exe> -DSEED_WRITER=<exe> -DWORK=<dir> -DSECONDS=<n> -P run_fuzzer.cmake
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/corpus")
execute_process(COMMAND "${SEED_WRITER}" "${WORK}/corpus" RESULT_VARIABLE _seed_rc)
if(NOT _seed_rc EQUAL 0)
  message(FATAL_ERROR "io_fuzz_seeds could not write the seed corpus (exit ${_seed_rc})")
endif()
execute_process(
  COMMAND "${FUZZER}" "${WORK}/corpus" -max_total_time=${SECONDS} -max_len=16384 -timeout=20 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=${WORK}/
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  file(GLOB _artifacts "${WORK}/crash-*" "${WORK}/leak-*" "${WORK}/timeout-*" "${WORK}/oom-*")
  message(FATAL_ERROR "io_reader_fuzzer failed (exit ${_rc}); reproducers: ${_artifacts}")
endif()
