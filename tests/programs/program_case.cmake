# SPDX-License-Identifier: MIT
# pith_program_case(): one CTest case of a command-line program, in one line, run by run_case.cmake.
#
#   pith_program_case(NAME [SUCCEEDS] [STDERR RE] [STDOUT RE] [TIMEOUT S] [REQUIRES PATH]
#                     [SHELL "sh commands"] COMMAND PROGRAM ARGS...)
#
# Without SUCCEEDS the program must exit non-zero (not by a signal) with stderr matching STDERR;
# with SUCCEEDS it must exit 0. PROGRAM may be a target name (pith-generate). A REQUIRES path that is
# absent skips the case (shared models). SHELL runs before the program in the same sh, e.g.
# "ulimit -v 200000". Every case has a timeout (default 60 s): a hang fails. Regexes use CMake's
# syntax; neither they, SHELL nor an argument may contain ';' (a CMake list separator): use '&&' or a
# newline in SHELL.
set(PITH_PROGRAM_CASE_RUNNER ${CMAKE_CURRENT_LIST_DIR}/run_case.cmake)

function(pith_program_case name)
  cmake_parse_arguments(PARSE_ARGV 1 case "SUCCEEDS" "STDERR;STDOUT;TIMEOUT;REQUIRES;SHELL" "COMMAND")
  if(NOT case_COMMAND)
    message(FATAL_ERROR "pith_program_case(${name}): COMMAND is missing")
  endif()
  if(case_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "pith_program_case(${name}): unexpected arguments ${case_UNPARSED_ARGUMENTS}")
  endif()
  list(POP_FRONT case_COMMAND program)
  if(TARGET ${program})
    set(program $<TARGET_FILE:${program}>)
  endif()
  set(expect fail)
  if(case_SUCCEEDS)
    set(expect succeed)
  endif()
  if(NOT case_TIMEOUT)
    set(case_TIMEOUT 60)
  endif()
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} -DEXPECT=${expect} "-DSTDERR_REGEX=${case_STDERR}" "-DSTDOUT_REGEX=${case_STDOUT}"
                   -DTIMEOUT=${case_TIMEOUT} "-DREQUIRES=${case_REQUIRES}" "-DSHELL_PREFIX=${case_SHELL}"
                   -P ${PITH_PROGRAM_CASE_RUNNER} -- ${program} ${case_COMMAND})
  math(EXPR ctest_timeout "${case_TIMEOUT} + 30")
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ctest_timeout} SKIP_REGULAR_EXPRESSION "pith-program-case skipped"
                                          LABELS programs)
endfunction()
