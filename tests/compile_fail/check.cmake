# Compiles one case of refused.cpp (cmake -P): COMPILER, FLAGS_FILE (a response file with the
# include directories and definitions), SOURCE, CASE, EXPECT (text the first error must contain;
# empty: the case must compile).
execute_process(COMMAND ${COMPILER} @${FLAGS_FILE} -fsyntax-only -DCASE=${CASE} ${SOURCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(EXPECT STREQUAL "")
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "case ${CASE} must compile, it does not:\n${err}")
    endif()
    return()
endif()
if(rc EQUAL 0)
    message(FATAL_ERROR "case ${CASE} compiled; the library must refuse it")
endif()
string(REGEX MATCH ": (fatal )?error: [^\n]*" first "${err}")
string(FIND "${first}" "${EXPECT}" at)
if(at EQUAL -1)
    message(FATAL_ERROR "case ${CASE}: the first error is not the library's\n  expected: ${EXPECT}\n  first:    ${first}\n\n${err}")
endif()
message(STATUS "case ${CASE}: ${first}")
