// tests/unit/main.cpp - the doctest runner for every kiln unit test.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
