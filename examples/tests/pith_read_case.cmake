# SPDX-License-Identifier: MIT
# Runs one pith-read case and checks how it ended: the exit status, no signal, and a message.
#
#   cmake -DCOMMAND="prog|arg|..." -DEXPECT=fail|pass -DREGEX=text [-DNOT_REGEX=text] [-DINPUT_FILE=f]
#         [-DOUTPUT_FILE=f] -P pith_read_case.cmake
#
# EXPECT fail: the program must exit with a status from 1 to 125 (not a signal, not a crash) and
# its output (stdout and stderr together) must match REGEX; pass: status 0 and a match.
# The output must not match NOT_REGEX when it is given. INPUT_FILE becomes the program's stdin and
# OUTPUT_FILE its stdout (then only stderr is matched).
foreach(variable COMMAND EXPECT REGEX)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "pith_read_case.cmake: -D${variable}= is required")
  endif()
endforeach()
string(REPLACE "|" ";" COMMAND "${COMMAND}")
set(redirects)
if(DEFINED INPUT_FILE)
  list(APPEND redirects INPUT_FILE "${INPUT_FILE}")
endif()
if(DEFINED OUTPUT_FILE)
  list(APPEND redirects OUTPUT_FILE "${OUTPUT_FILE}")
else()
  list(APPEND redirects OUTPUT_VARIABLE output)
endif()
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE status ERROR_VARIABLE errors ${redirects})
set(all "${output}${errors}")
message("exit status: ${status}\n${all}")
if(NOT status MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the program did not exit normally: ${status}")
endif()
if(EXPECT STREQUAL "fail")
  if(status EQUAL 0 OR status GREATER 125)
    message(FATAL_ERROR "expected a failure status (1 to 125), got ${status}")
  endif()
elseif(NOT status EQUAL 0)
  message(FATAL_ERROR "expected success, got status ${status}")
endif()
if(NOT all MATCHES "${REGEX}")
  message(FATAL_ERROR "the output does not match '${REGEX}'")
endif()
if(DEFINED NOT_REGEX AND all MATCHES "${NOT_REGEX}")
  message(FATAL_ERROR "the output matches '${NOT_REGEX}'")
endif()
