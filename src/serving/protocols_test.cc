#include "serving/protocols.h"

#include <gtest/gtest.h>

namespace takt::serving {
namespace {

const std::vector<std::string> kFeatures = {"a", "b", "c"};

TEST(OipTest, OneTensorNestedOrFlat) {
  auto r = ParseOipInfer(
      R"({"id":"r1","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}]})",
      kFeatures);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->id, "r1");
  EXPECT_EQ(r->rows.rows, 2u);
  EXPECT_EQ(r->rows.values[5], 6.0f);
  r = ParseOipInfer(R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP64","data":[1,2,3]}]})", kFeatures);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->rows.rows, 1u);
}

TEST(OipTest, OneInputPerFeatureInAnyOrder) {
  auto r = ParseOipInfer(R"({"inputs":[
      {"name":"c","shape":[2],"datatype":"FP32","data":[3,6]},
      {"name":"a","shape":[2],"datatype":"INT64","data":[1,4]},
      {"name":"b","shape":[2,1],"datatype":"BOOL","data":[true,false]}]})",
                         kFeatures);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->rows.values, (std::vector<float>{1, 1, 3, 4, 0, 6}));
}

TEST(OipTest, BadRequestsNameTheProblem) {
  struct Case {
    const char* body;
    const char* expect;
  } cases[] = {
      {R"({"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]})", "the model expects 3"},
      {R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3]}]})", "needs 6"},
      {R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"STRING","data":[1,2,3]}]})", "datatype 'STRING'"},
      {R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,"b",3]}]})", "must hold numbers"},
      {R"({"inputs":[]})", "non-empty array"},
      {R"({"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]},
                     {"name":"zz","shape":[1],"datatype":"FP32","data":[1]}]})",
       "'zz' is not a feature"},
      {R"({"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]},
                     {"name":"b","shape":[1],"datatype":"FP32","data":[1]}]})",
       "missing input for feature 'c'"},
      {R"({"inputs": [)", "invalid JSON"},
      {R"([1,2,3])", "expected a JSON object"},
  };
  for (const auto& c : cases) {
    auto r = ParseOipInfer(c.body, kFeatures);
    ASSERT_FALSE(r.has_value()) << c.body;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_NE(r.error().message().find(c.expect), std::string::npos) << r.error().message();
  }
}

TEST(CsvRowsTest, ParsesRowsAndRejectsBadOnes) {
  auto m = ParseCsvRows("1,2,3\r\n4, 5 ,6\n\n", 3);
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(m->rows, 2u);
  EXPECT_EQ(m->values[4], 5.0f);
  EXPECT_NE(ParseCsvRows("1,2\n", 3).error().message().find("csv line 1: 2 values"), std::string::npos);
  EXPECT_NE(ParseCsvRows("1,2,3\n1,x,3\n", 3).error().message().find("csv line 2, value 2: 'x'"),
            std::string::npos);
  EXPECT_NE(ParseCsvRows("1,2,3,4\n", 3).error().message().find("more than 3"), std::string::npos);
  EXPECT_FALSE(ParseCsvRows("1,inf,3\n", 3).has_value());
  EXPECT_FALSE(ParseCsvRows("", 3).has_value());
  auto missing = ParseCsvRows("1,,3\n", 3);
  ASSERT_TRUE(missing.has_value());
  EXPECT_TRUE(std::isnan(missing->values[1]));
}

TEST(JsonInstancesTest, ObjectOrBareArray) {
  auto m = ParseJsonInstances(R"({"instances":[[1,2,3],[4,5,6]]})", 3);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->rows, 2u);
  EXPECT_TRUE(ParseJsonInstances("[[1,2,3]]", 3).has_value());
  EXPECT_FALSE(ParseJsonInstances(R"({"instances":[[1,2]]})", 3).has_value());
  EXPECT_FALSE(ParseJsonInstances(R"({"rows":[[1,2,3]]})", 3).has_value());
  EXPECT_FALSE(ParseJsonInstances(R"({"instances":[[1,[2],3]]})", 3).has_value());
  EXPECT_EQ(RenderJsonPredictions({0.5f}), R"({"predictions":[0.5]})");
}

}  // namespace
}  // namespace takt::serving
