# SPDX-License-Identifier: MIT
# Runs pith-read on a short and a long generated document and checks that its peak memory does not grow.
#
#   cmake -DPITH_READ=path -DMODEL=path -DKIND=words|line|kv -DSHORT=n -DLONG=n -DWORK=dir
#         [-DMAKE_DOCUMENT=pith-evict-bench] (-DTOLERANCE_PERCENT=p | -DLIMIT_MIB=m) -DARGS="--budget|64|..."
#         -P read_memory.cmake
#
# KIND words: SHORT and LONG are word counts of English sentences (a stories-style text, many lines);
# KIND line: LONG bytes (a multiple of 1 MiB) on one line without a space, SHORT words as the reference;
# KIND kv: SHORT and LONG are token counts of pith-evict-bench's kv task (toy word vocabularies).
# The test passes when peak(long) <= peak(short) * (1 + TOLERANCE_PERCENT / 100), or, with LIMIT_MIB,
# when peak(long) <= LIMIT_MIB; it prints both peaks. A missing MODEL prints "skipped:" and passes
# (the CTest case maps that line to a skip).
foreach(variable PITH_READ MODEL KIND SHORT LONG WORK)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "read_memory.cmake: -D${variable}= is required")
  endif()
endforeach()
if(NOT EXISTS "${MODEL}")
  message("skipped: ${MODEL} is absent")
  return()
endif()
file(MAKE_DIRECTORY "${WORK}")
string(REPLACE "|" ";" ARGS "${ARGS}")

# Writes `words` words of sentences to `path`, one sentence a line; the sentences vary their names
# and numbers so the text is not one repeated token pattern.
function(write_words path words)
  set(names Lily Tom Sue Max Ben Mia Sam Anna)
  set(things ball cat tree cake boat dog hat kite)
  set(text "")
  set(count 0)
  set(i 0)
  file(WRITE "${path}" "")
  while(count LESS words)
    math(EXPR n "${i} % 8")
    math(EXPR t "(${i} / 8) % 8")
    list(GET names ${n} name)
    list(GET things ${t} thing)
    # 24 words a sentence.
    string(APPEND text "Once upon a time, ${name} found a big red ${thing} in the park. "
                       "${name} was happy and played with the ${thing} all day long.\n")
    math(EXPR count "${count} + 24")
    math(EXPR i "${i} + 1")
    math(EXPR flush "${i} % 512")
    if(flush EQUAL 0)
      file(APPEND "${path}" "${text}")
      set(text "")
    endif()
  endwhile()
  file(APPEND "${path}" "${text}")
endfunction()

set(short_document "${WORK}/short.txt")
set(long_document "${WORK}/long.txt")
if(KIND STREQUAL "words")
  write_words("${short_document}" ${SHORT})
  write_words("${long_document}" ${LONG})
elseif(KIND STREQUAL "line")
  write_words("${short_document}" ${SHORT})
  # "ll" is a piece of the Llama-style vocabularies: a line of "l" has no place where the tokenizer
  # may cut it, so pith-read cuts it by force at its window.
  string(REPEAT "llllllllllllllll" 65536 block)  # 1 MiB
  math(EXPR blocks "${LONG} / 1048576")
  file(WRITE "${long_document}" "")
  foreach(b RANGE 1 ${blocks})
    file(APPEND "${long_document}" "${block}")
  endforeach()
elseif(KIND STREQUAL "kv")
  foreach(which short long)
    string(TOUPPER ${which} length_variable)
    execute_process(COMMAND "${MAKE_DOCUMENT}" --make-document "${${which}_document}" --task kv
                            --length ${${length_variable}} --seed 1
                    RESULT_VARIABLE status OUTPUT_QUIET)
    if(NOT status EQUAL 0)
      message(FATAL_ERROR "pith-evict-bench --make-document failed: ${status}")
    endif()
  endforeach()
else()
  message(FATAL_ERROR "read_memory.cmake: KIND must be words, line or kv")
endif()

# The peak memory pith-read reports, in tenths of a MiB (its printed precision).
function(peak_of document out)
  execute_process(COMMAND "${PITH_READ}" "${MODEL}" --document "${document}" ${ARGS}
                  RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "pith-read failed on ${document} (${status}):\n${output}\n${errors}")
  endif()
  if(NOT errors MATCHES "read ([0-9]+) tokens.*peak memory ([0-9]+)\\.([0-9]) MiB")
    message(FATAL_ERROR "pith-read printed no peak memory:\n${errors}")
  endif()
  message("${document}: ${CMAKE_MATCH_1} tokens, peak memory ${CMAKE_MATCH_2}.${CMAKE_MATCH_3} MiB")
  math(EXPR tenths "${CMAKE_MATCH_2} * 10 + ${CMAKE_MATCH_3}")
  set(${out} ${tenths} PARENT_SCOPE)
endfunction()

peak_of("${short_document}" short_peak)
peak_of("${long_document}" long_peak)
file(REMOVE "${short_document}" "${long_document}")
if(DEFINED LIMIT_MIB)
  math(EXPR limit "${LIMIT_MIB} * 10")
  if(long_peak GREATER limit)
    message(FATAL_ERROR "peak memory on the long document exceeds ${LIMIT_MIB} MiB")
  endif()
else()
  math(EXPR allowed "${short_peak} * (100 + ${TOLERANCE_PERCENT}) / 100")
  if(long_peak GREATER allowed)
    message(FATAL_ERROR "peak memory grows with the document: the long one's exceeds the short one's by more "
                        "than ${TOLERANCE_PERCENT}%")
  endif()
endif()
message("peak memory is flat")
