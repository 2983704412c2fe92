# Checks that every ```cpp block of README.md and docs/*.md appears verbatim,
# as contiguous whole lines, in some examples/snippets/*.cpp file. The build
# compiles those files (target ccp_snippets), so a block that passes this
# check compiles against the current API.
#
#   cmake -DROOT=/path/to/custom_cache_page -P cmake/check_snippets.cmake
#
# Fences: ``` or ~~~ (three or more), indented by at most three spaces, info
# string cpp or c++; a fence's indentation is taken off its lines, as
# CommonMark does. Lines are compared exactly (trailing spaces included);
# only CR of CRLF line ends is ignored.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED ROOT OR NOT IS_DIRECTORY "${ROOT}")
  message(FATAL_ERROR "check_snippets: pass -DROOT=<source directory> (got '${ROOT}')")
endif()

file(GLOB _docs LIST_DIRECTORIES false "${ROOT}/docs/*.md")
list(SORT _docs)
set(_docs "${ROOT}/README.md" ${_docs})
file(GLOB _snippets LIST_DIRECTORIES false "${ROOT}/examples/snippets/*.cpp")
list(SORT _snippets)
if(NOT _snippets)
  message(FATAL_ERROR "check_snippets: no ${ROOT}/examples/snippets/*.cpp files")
endif()

# Characters that CMake's list splitting would misread stand in for by
# control characters while the Markdown is split into lines.
string(ASCII 1 _semicolon)
string(ASCII 2 _open)
string(ASCII 3 _close)
string(ASCII 4 _backslash)

function(_ccp_restore out text)
  string(REPLACE "${_semicolon}" ";" text "${text}")
  string(REPLACE "${_open}" "[" text "${text}")
  string(REPLACE "${_close}" "]" text "${text}")
  string(REPLACE "${_backslash}" "\\" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# Each snippet file as "\n<text>\n": a block matches whole lines when
# "\n<its lines, each ending in \n>" occurs in it.
set(_snippet_count 0)
foreach(_snippet IN LISTS _snippets)
  file(READ "${_snippet}" _text)
  string(REPLACE "\r\n" "\n" _text "${_text}")
  set(_snippet_text_${_snippet_count} "\n${_text}\n")
  file(RELATIVE_PATH _snippet_name_${_snippet_count} "${ROOT}" "${_snippet}")
  math(EXPR _snippet_count "${_snippet_count} + 1")
endforeach()
math(EXPR _last_snippet "${_snippet_count} - 1")

# Sets <out> to the index of the first snippet file that contains <needle>,
# or -1.
function(_ccp_find_snippet out needle)
  foreach(_i RANGE ${_last_snippet})
    string(FIND "${_snippet_text_${_i}}" "${needle}" _at)
    if(NOT _at EQUAL -1)
      set(${out} ${_i} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  set(${out} -1 PARENT_SCOPE)
endfunction()

set(_failures "")
set(_blocks 0)
foreach(_doc IN LISTS _docs)
  if(NOT EXISTS "${_doc}")
    continue()
  endif()
  file(RELATIVE_PATH _doc_name "${ROOT}" "${_doc}")
  file(READ "${_doc}" _text)
  string(REPLACE "\r\n" "\n" _text "${_text}")
  string(REPLACE "\\" "${_backslash}" _text "${_text}")
  string(REPLACE ";" "${_semicolon}" _text "${_text}")
  string(REPLACE "[" "${_open}" _text "${_text}")
  string(REPLACE "]" "${_close}" _text "${_text}")
  string(REPLACE "\n" ";" _lines "${_text}")

  set(_lineno 0)
  set(_fence "")        # the open fence (``` or ~~~ ...), empty outside one
  foreach(_line IN LISTS _lines)
    math(EXPR _lineno "${_lineno} + 1")
    if(_fence STREQUAL "")
      if(_line MATCHES "^( ? ? ?)(```+|~~~+)[ \t]*([^ \t`]*)")
        set(_fence "${CMAKE_MATCH_2}")
        string(LENGTH "${CMAKE_MATCH_1}" _indent)
        set(_is_cpp FALSE)
        if(CMAKE_MATCH_3 MATCHES "^(cpp|c\\+\\+|C\\+\\+)$")
          set(_is_cpp TRUE)
          set(_start ${_lineno})
          set(_count 0)
        endif()
      endif()
      continue()
    endif()

    # Inside a fence: a closing fence is the same character, at least as
    # long, with nothing else on the line.
    string(STRIP "${_line}" _stripped)
    string(SUBSTRING "${_fence}" 0 1 _fence_char)
    string(LENGTH "${_fence}" _fence_length)
    string(LENGTH "${_stripped}" _stripped_length)
    if(_stripped MATCHES "^(```+|~~~+)$" AND _stripped MATCHES "^${_fence_char}"
       AND NOT _stripped_length LESS _fence_length AND _line MATCHES "^ ? ? ?[`~]")
      set(_fence "")
      if(NOT _is_cpp OR _count EQUAL 0)
        continue()
      endif()
      math(EXPR _blocks "${_blocks} + 1")
      # The longest run of the block's first lines found in one file.
      set(_prefix "\n")
      set(_matched 0)
      set(_where -1)
      math(EXPR _last_line "${_count} - 1")
      foreach(_k RANGE ${_last_line})
        _ccp_find_snippet(_found "${_prefix}${_block_line_${_k}}\n")
        if(_found EQUAL -1)
          break()
        endif()
        string(APPEND _prefix "${_block_line_${_k}}\n")
        set(_where ${_found})
        math(EXPR _matched "${_k} + 1")
      endforeach()
      if(_matched LESS _count)
        set(_first "${_block_line_0}")
        foreach(_k RANGE ${_last_line})
          string(STRIP "${_block_line_${_k}}" _s)
          if(NOT _s STREQUAL "")
            set(_first "${_s}")
            break()
          endif()
        endforeach()
        math(EXPR _bad_lineno "${_start} + 1 + ${_matched}")
        string(APPEND _failures
          "  ${_doc_name}:${_start}: the ```cpp block starting `${_first}`\n"
          "    is not in any examples/snippets/*.cpp file as contiguous whole lines")
        if(_matched GREATER 0)
          string(APPEND _failures
            ";\n    its first ${_matched} line(s) are in ${_snippet_name_${_where}}, then"
            " ${_doc_name}:${_bad_lineno} `${_block_line_${_matched}}` differs")
        endif()
        string(APPEND _failures "\n")
      endif()
      continue()
    endif()

    if(_is_cpp)
      # Take the fence's indentation off, as Markdown does.
      foreach(_n RANGE 1 3)
        if(_n GREATER _indent)
          break()
        endif()
        if(_line MATCHES "^ ")
          string(SUBSTRING "${_line}" 1 -1 _line)
        endif()
      endforeach()
      _ccp_restore(_block_line_${_count} "${_line}")
      math(EXPR _count "${_count} + 1")
    endif()
  endforeach()

  if(NOT _fence STREQUAL "")
    string(APPEND _failures "  ${_doc_name}: a code fence opened and never closed\n")
  endif()
endforeach()

if(_failures)
  message(FATAL_ERROR
    "check_snippets: every ```cpp block of README.md and docs/*.md must appear verbatim, as contiguous "
    "whole lines, in a file under examples/snippets/ (compiled by the build, target ccp_snippets).\n"
    "${_failures}"
    "Change the snippet file to match the block (and see that ccp_snippets still builds), or the block "
    "to match the snippet.")
endif()
message(STATUS "check_snippets: ${_blocks} ```cpp block(s) in README.md and docs/*.md, "
               "each found in examples/snippets/ (${_snippet_count} file(s))")
