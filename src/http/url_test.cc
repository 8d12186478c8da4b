#include "http/url.h"

#include <gtest/gtest.h>

namespace takt::http {
namespace {

TEST(UrlTest, PercentEncodeKeepsOnlyUnreservedBytes) {
  EXPECT_EQ(PercentEncode("weld-pm_v1.2~x"), "weld-pm_v1.2~x");
  EXPECT_EQ(PercentEncode("weld pm/v1?a=b&c"), "weld%20pm%2Fv1%3Fa%3Db%26c");
  EXPECT_EQ(PercentEncode("\xC3\xBC"), "%C3%BC");
  EXPECT_EQ(PercentEncode(""), "");
}

TEST(UrlTest, PercentDecodeInvertsEncode) {
  std::string text = "a b/c?d=e&f+%g\xC3\xBC";
  auto decoded = PercentDecode(PercentEncode(text));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, text);
  EXPECT_EQ(*PercentDecode("a+b"), "a+b");
  EXPECT_EQ(*PercentDecode("a+b", /*plus_as_space=*/true), "a b");
  EXPECT_EQ(*PercentDecode("%2f%2F"), "//");
}

TEST(UrlTest, PercentDecodeRejectsMalformedEscapesAndNul) {
  for (std::string_view bad : {"%", "%4", "abc%zz", "%g1", "x%00y"}) {
    auto decoded = PercentDecode(bad);
    ASSERT_FALSE(decoded) << bad;
    EXPECT_EQ(decoded.error().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(UrlTest, ParseQueryDecodesKeysAndValuesAndKeepsRepeats) {
  auto query = ParseQuery("plant=Werk%20A&tag=a&tag=b+c&flag&&empty=");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->count("tag"), 2u);
  auto range = query->equal_range("tag");
  EXPECT_EQ(range.first->second, "a");
  EXPECT_EQ(std::next(range.first)->second, "b c");
  EXPECT_EQ(query->find("plant")->second, "Werk A");
  EXPECT_EQ(query->find("flag")->second, "");
  EXPECT_EQ(query->find("empty")->second, "");
  EXPECT_EQ(query->size(), 5u);

  auto bad = ParseQuery("ok=1&bad=%zz");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("'bad'"), std::string::npos);
}

TEST(UrlTest, BuildQueryRoundTrips) {
  std::multimap<std::string, std::string> params = {{"a b", "1&2"}, {"t", "x"}, {"t", "y=z"}};
  EXPECT_EQ(BuildQuery(params), "a%20b=1%262&t=x&t=y%3Dz");
  EXPECT_EQ(*ParseQuery(BuildQuery(params)), params);
}

}  // namespace
}  // namespace takt::http
