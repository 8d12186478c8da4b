#include "tune/search_space.h"

#include <gtest/gtest.h>

namespace takt::tune {
namespace {

const char* kSpace = R"({
  "eta": {"type": "loguniform", "low": 0.01, "high": 0.3},
  "max_depth": {"type": "int", "low": 3, "high": 10},
  "subsample": {"type": "uniform", "low": 0.5, "high": 1.0},
  "booster": {"type": "choice", "values": ["gbtree", "dart"]}
})";

SearchSpace MustParse(const Json& j) {
  auto s = SearchSpace::FromJson(j);
  EXPECT_TRUE(s.has_value()) << j.dump() << ": " << s.error().ToString();
  return std::move(s).value();
}

// The message of the InvalidArgument that FromJson must return.
std::string SpaceError(const Json& j) {
  auto s = SearchSpace::FromJson(j);
  EXPECT_FALSE(s.has_value()) << j.dump();
  if (s) return "";
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  return s.error().message();
}

std::string SpaceError(const char* text) { return SpaceError(Json::parse(text)); }

std::string PointError(const SearchSpace& space, const Json& point) {
  auto st = space.Validate(point);
  EXPECT_FALSE(st.has_value()) << point.dump();
  if (st) return "";
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  return st.error().message();
}

TEST(SearchSpaceTest, ParsesEveryKindOrderedByName) {
  const SearchSpace space = MustParse(Json::parse(kSpace));
  const auto& dims = space.dimensions();
  ASSERT_EQ(dims.size(), 4u);
  EXPECT_EQ(dims[0].name, "booster");
  EXPECT_EQ(dims[0].kind, Dimension::Kind::kChoice);
  EXPECT_EQ(dims[0].values, (std::vector<Json>{"gbtree", "dart"}));
  EXPECT_EQ(dims[1].name, "eta");
  EXPECT_EQ(dims[1].kind, Dimension::Kind::kLogUniform);
  EXPECT_DOUBLE_EQ(dims[1].low, 0.01);
  EXPECT_DOUBLE_EQ(dims[1].high, 0.3);
  EXPECT_EQ(dims[2].name, "max_depth");
  EXPECT_EQ(dims[2].kind, Dimension::Kind::kInt);
  EXPECT_EQ(dims[2].low, 3);
  EXPECT_EQ(dims[2].high, 10);
  EXPECT_EQ(dims[3].name, "subsample");
  EXPECT_EQ(dims[3].kind, Dimension::Kind::kUniform);
  EXPECT_EQ(KindName(dims[3].kind), "uniform");
}

TEST(SearchSpaceTest, ChoiceValuesMayBeStringsNumbersAndBools) {
  const SearchSpace space =
      MustParse(Json::parse(R"({"x": {"type": "choice", "values": ["a", 1, 2.5, true, -3]}})"));
  EXPECT_EQ(space.dimensions()[0].values.size(), 5u);
  // Integral floats are accepted as int bounds.
  EXPECT_TRUE(
      SearchSpace::FromJson(Json::parse(R"({"n": {"type": "int", "low": 1.0, "high": 4}})")).has_value());
}

TEST(SearchSpaceTest, RejectsWhatIsNotASpace) {
  EXPECT_NE(SpaceError("[1, 2]").find("search space: must be an object"), std::string::npos);
  EXPECT_NE(SpaceError("\"eta\"").find("got string"), std::string::npos);
  EXPECT_NE(SpaceError("{}").find("no parameters"), std::string::npos);
  EXPECT_NE(SpaceError(R"({"": {"type": "uniform", "low": 0, "high": 1}})").find("name is empty"),
            std::string::npos);
  EXPECT_NE(SpaceError(R"({"eta": 0.1})").find("eta: must be an object"), std::string::npos);
}

TEST(SearchSpaceTest, NamesTheParameterAndWhatIsWrong) {
  struct Case {
    const char* space;
    const char* message;
  };
  const Case cases[] = {
      {R"({"eta": {"low": 0, "high": 1}})", "search space: eta: missing \"type\""},
      {R"({"eta": {"type": 3, "low": 0, "high": 1}})", "search space: eta: \"type\" must be a string"},
      {R"({"eta": {"type": "gaussian", "low": 0, "high": 1}})",
       "search space: eta: unknown type \"gaussian\""},
      {R"({"eta": {"type": "uniform", "high": 1}})", "search space: eta: missing \"low\""},
      {R"({"eta": {"type": "uniform", "low": 0}})", "search space: eta: missing \"high\""},
      {R"({"eta": {"type": "uniform", "low": "0", "high": 1}})", "eta: \"low\" must be a number, got string"},
      {R"({"eta": {"type": "uniform", "low": 0.3, "high": 0.01}})",
       "search space: eta: low (0.3) must be less than high (0.01)"},
      {R"({"eta": {"type": "uniform", "low": 1, "high": 1}})", "eta: low (1) must be less than high (1)"},
      {R"({"eta": {"type": "loguniform", "low": 0, "high": 1}})", "eta: loguniform needs low > 0, got 0"},
      {R"({"eta": {"type": "loguniform", "low": -1, "high": 1}})", "eta: loguniform needs low > 0, got -1"},
      {R"({"eta": {"type": "uniform", "low": 0, "high": 1, "step": 0.1}})",
       "eta: unknown key \"step\" (a uniform dimension takes type, low, high)"},
      {R"({"eta": {"type": "uniform", "lo": 0, "high": 1}})", "eta: unknown key \"lo\""},
      {R"({"depth": {"type": "int", "low": 3.5, "high": 10}})",
       "search space: depth: int bounds must be integers, got low = 3.5"},
      {R"({"depth": {"type": "int", "low": 3, "high": 9.9}})",
       "depth: int bounds must be integers, got high = 9.9"},
      {R"({"depth": {"type": "int", "low": 10, "high": 3}})", "depth: low (10) must be less than high (3)"},
      {R"({"depth": {"type": "int", "low": 0, "high": 1e300}})", "depth: int bound high = 1e+300 is beyond"},
      {R"({"booster": {"type": "choice", "values": []}})", "search space: booster: choice has no values"},
      {R"({"booster": {"type": "choice"}})", "booster: choice needs \"values\""},
      {R"({"booster": {"type": "choice", "values": "gbtree"}})",
       "booster: \"values\" must be an array, got string"},
      {R"({"booster": {"type": "choice", "values": ["a", null]}})",
       "booster: values[1] must be a string, number or bool, got null"},
      {R"({"booster": {"type": "choice", "values": ["a", ["b"]]}})", "booster: values[1] must be a string"},
      {R"({"booster": {"type": "choice", "values": ["a", "b", "a"]}})",
       "booster: values[2] (\"a\") repeats values[0]"},
      {R"({"booster": {"type": "choice", "values": ["a"], "low": 0}})",
       "booster: unknown key \"low\" (a choice dimension takes type, values)"},
  };
  for (const Case& c : cases) {
    const std::string message = SpaceError(c.space);
    EXPECT_NE(message.find(c.message), std::string::npos) << c.space << "\n  got: " << message;
  }
}

TEST(SearchSpaceTest, ValidateAcceptsPointsInsideEveryDimension) {
  const SearchSpace space = MustParse(Json::parse(kSpace));
  EXPECT_TRUE(
      space.Validate(Json::parse(R"({"eta": 0.01, "max_depth": 10, "subsample": 0.75, "booster": "dart"})")));
  EXPECT_TRUE(
      space.Validate(Json::parse(R"({"eta": 0.3, "max_depth": 3.0, "subsample": 1, "booster": "gbtree"})")));
}

TEST(SearchSpaceTest, ValidateNamesTheParameterThatIsWrong) {
  const SearchSpace space = MustParse(Json::parse(kSpace));
  auto point = [](const char* patch) {
    Json p = Json::parse(R"({"eta": 0.1, "max_depth": 5, "subsample": 0.75, "booster": "dart"})");
    p.merge_patch(Json::parse(patch));
    return p;
  };
  EXPECT_NE(PointError(space, Json::array()).find("point: must be an object"), std::string::npos);
  EXPECT_NE(PointError(space, point(R"({"eta": null})")).find("point: missing parameter eta"),
            std::string::npos);
  EXPECT_NE(PointError(space, point(R"({"eta": 0.5})")).find("point: eta: 0.5 is outside [0.01, 0.3]"),
            std::string::npos);
  EXPECT_NE(PointError(space, point(R"({"eta": "0.1"})")).find("point: eta: must be a number, got string"),
            std::string::npos);
  EXPECT_NE(PointError(space, point(R"({"max_depth": 11})")).find("point: max_depth: 11 is outside 3..10"),
            std::string::npos);
  EXPECT_NE(
      PointError(space, point(R"({"max_depth": 5.5})")).find("point: max_depth: must be an integer, got 5.5"),
      std::string::npos);
  EXPECT_NE(PointError(space, point(R"({"booster": "gblinear"})"))
                .find("point: booster: \"gblinear\" is not one of [\"gbtree\",\"dart\"]"),
            std::string::npos);
  EXPECT_NE(PointError(space, point(R"({"gamma": 1})")).find("point: unknown parameter gamma"),
            std::string::npos);
}

}  // namespace
}  // namespace takt::tune
