# SPDX-License-Identifier: MIT
# Runs one command-line program case (cmake -P) and fails on a signal, a timeout, the wrong exit
# status or output that does not match; used by pith_program_case() in program_case.cmake.
#
#   cmake [-DEXPECT=fail|succeed] [-DSTDERR_REGEX=RE] [-DSTDOUT_REGEX=RE] [-DTIMEOUT=SECONDS]
#         [-DREQUIRES=PATH] [-DSHELL_PREFIX="sh commands"] -P run_case.cmake -- PROGRAM ARGS...
#
# EXPECT=fail (the default) wants a non-zero exit status below 126 (not a signal, not sh's "could
# not run"); succeed wants 0. SHELL_PREFIX runs first in the same sh (e.g. "ulimit -v 20000"), which
# then execs the program. A missing REQUIRES path skips the case with a message.
cmake_minimum_required(VERSION 3.25)

set(command)
set(after_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_separator)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_separator TRUE)
  endif()
endforeach()
if(NOT command)
  message(FATAL_ERROR "run_case.cmake: no command after --")
endif()
if(NOT DEFINED EXPECT OR EXPECT STREQUAL "")
  set(EXPECT fail)
endif()
if(NOT EXPECT MATCHES "^(fail|succeed)$")
  message(FATAL_ERROR "run_case.cmake: EXPECT is '${EXPECT}', not fail or succeed")
endif()
if(NOT DEFINED TIMEOUT OR TIMEOUT STREQUAL "")
  set(TIMEOUT 60)
endif()
if(DEFINED REQUIRES AND NOT REQUIRES STREQUAL "" AND NOT EXISTS "${REQUIRES}")
  message("pith-program-case skipped: ${REQUIRES} is absent")
  return()
endif()
if(DEFINED SHELL_PREFIX AND NOT SHELL_PREFIX STREQUAL "")
  set(command sh -c "${SHELL_PREFIX}\nexec \"\$0\" \"\$@\"" ${command})
endif()

string(REPLACE ";" " " shown "${command}")
message("command: ${shown}")
execute_process(COMMAND ${command} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${TIMEOUT})
message("exit status: ${status}\n--- stdout ---\n${out}\n--- stderr ---\n${err}--------------")

if(NOT status MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the program did not exit normally: ${status}")
endif()
if(status GREATER_EQUAL 126)
  message(FATAL_ERROR "exit status ${status}: a signal (128 + its number) or a program that could not run")
endif()
if(EXPECT STREQUAL "fail" AND status EQUAL 0)
  message(FATAL_ERROR "the program exited 0; this case must fail")
endif()
if(EXPECT STREQUAL "succeed" AND NOT status EQUAL 0)
  message(FATAL_ERROR "the program exited ${status}; this case must succeed")
endif()
if(DEFINED STDERR_REGEX AND NOT STDERR_REGEX STREQUAL "" AND NOT err MATCHES "${STDERR_REGEX}")
  message(FATAL_ERROR "stderr does not match: ${STDERR_REGEX}")
endif()
if(DEFINED STDOUT_REGEX AND NOT STDOUT_REGEX STREQUAL "" AND NOT out MATCHES "${STDOUT_REGEX}")
  message(FATAL_ERROR "stdout does not match: ${STDOUT_REGEX}")
endif()
