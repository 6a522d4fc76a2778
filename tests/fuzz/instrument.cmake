# Included by the top-level CMakeLists.txt with TRANCHE_FUZZ=ON, before the
# libraries are added: everything a fuzz target links is instrumented for
# libFuzzer (coverage counters and comparison tracing: fuzzer-no-link) and
# built with AddressSanitizer (leaks included) and UndefinedBehaviorSanitizer,
# so a finding in the product code is reported where it happens.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "TRANCHE_FUZZ needs clang and its libFuzzer: -DCMAKE_CXX_COMPILER=clang++-16 (tests/fuzz/README.md)")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
# libstdc++ 12 offers <expected> only when __cpp_concepts >= 202002L. Clang 16
# implements what it relies on (P0848, conditionally trivial special members)
# but still reports 201907L, so the fuzz build says so itself.
if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 19)
  add_compile_options(-U__cpp_concepts -D__cpp_concepts=202002L)
endif()
# Boost 1.74's Asio recognizes co_await in clang only through the pre-C++20
# <experimental/coroutine>; clang 16 with libstdc++ has the standard one, which
# Asio already uses (BOOST_ASIO_HAS_STD_COROUTINE): the agent's coroutines build.
add_compile_definitions(BOOST_ASIO_HAS_CO_AWAIT=1)
