#include "core/result.h"

#include <gtest/gtest.h>

namespace takt {
namespace {

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  TAKT_ASSIGN_OR_RETURN(int h, Half(x));
  TAKT_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(ResultTest, PropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "3 is odd");
}

TEST(ResultTest, CodesMapOntoHttpStatuses) {
  EXPECT_EQ(HttpStatus(Code::kNotFound), 404);
  EXPECT_EQ(HttpStatus(Code::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatus(Code::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatus(Code::kPayloadTooLarge), 413);
  EXPECT_EQ(CodeName(Code::kNotFound), "NOT_FOUND");
}

TEST(ResultTest, ContextIsPrefixed) {
  Error e(Code::kNotFound, "no version 7");
  EXPECT_EQ(e.WithContext("model group weld-pm").message(), "model group weld-pm: no version 7");
  EXPECT_EQ(e.ToString(), "NOT_FOUND: no version 7");
}

}  // namespace
}  // namespace takt
