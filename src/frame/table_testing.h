// File: frame/table_testing.h
//
// Test-only helpers for comparing Tables. Included by *_test.cc files only.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <string>

#include "frame/table.h"

namespace takt::frame::testing {

// Expects `actual` to equal `expected` exactly: schema, validity and values,
// float64 compared bit for bit (so NaN equals NaN and -0.0 differs from 0.0).
inline void ExpectTablesEqual(const Table& expected, const Table& actual) {
  ASSERT_EQ(expected.schema(), actual.schema());
  for (size_t c = 0; c < expected.columns.size(); ++c) {
    const Column& e = expected.columns[c];
    const Column& a = actual.columns[c];
    SCOPED_TRACE("column " + e.field.name);
    EXPECT_EQ(e.valid, a.valid);
    EXPECT_EQ(e.ints, a.ints);
    EXPECT_EQ(e.strings, a.strings);
    ASSERT_EQ(e.doubles.size(), a.doubles.size());
    for (size_t r = 0; r < e.doubles.size(); ++r) {
      EXPECT_EQ(std::bit_cast<uint64_t>(e.doubles[r]), std::bit_cast<uint64_t>(a.doubles[r]))
          << "row " << r << ": " << e.doubles[r] << " vs " << a.doubles[r];
    }
  }
}

}  // namespace takt::frame::testing
