# takt_module(NAME DEPS a b c)
#
# One CMake library per folder under src/: every foo.cc that is not a
# foo_test.cc goes into the library `takt_NAME`; every foo_test.cc goes into
# the test binary `takt_NAME_test`, registered with CTest.
function(takt_module name)
  cmake_parse_arguments(ARG "" "" "DEPS;TEST_DEPS" ${ARGN})
  file(GLOB _all CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  set(_srcs)
  set(_tests)
  foreach(f ${_all})
    if(f MATCHES "/main\\.cc$")
      continue()
    elseif(f MATCHES "_test\\.cc$")
      list(APPEND _tests ${f})
    else()
      list(APPEND _srcs ${f})
    endif()
  endforeach()
  if(NOT _srcs)
    message(STATUS "takt_module(${name}): no sources yet, skipped")
    return()
  endif()
  add_library(takt_${name} STATIC ${_srcs})
  target_include_directories(takt_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(takt_${name} PUBLIC ${ARG_DEPS})
  if(_tests)
    add_executable(takt_${name}_test ${_tests})
    target_link_libraries(takt_${name}_test PRIVATE takt_${name} ${ARG_TEST_DEPS}
                          GTest::gtest GTest::gtest_main GTest::gmock)
    gtest_discover_tests(takt_${name}_test DISCOVERY_TIMEOUT 60
                         PROPERTIES ENVIRONMENT "TAKT_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  endif()
endfunction()
