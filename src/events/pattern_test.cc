#include "events/pattern.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace takt::events {
namespace {

using ::testing::HasSubstr;

Json Approved() {
  Event e;
  e.id = "ev-1";
  e.type = kModelVersionApproved;
  e.source = "/registry";
  e.subject = "models/weld-pm/versions/3";
  e.time = "2026-12-01T10:00:00Z";
  e.data_json =
      R"({"group": "weld-pm", "version": 3, "stage": "dev", "metrics": {"auc": 0.93, "recall": 0.7},
          "tags": ["welding", "plant-2"], "comment": null})";
  return Envelope(e);
}

bool Match(const std::string& pattern, const Json& event = Approved()) {
  auto p = Pattern::ParseText(pattern);
  EXPECT_TRUE(p.has_value()) << pattern << ": " << p.error().ToString();
  return p && p->Matches(event);
}

TEST(PatternTest, TheEnvelopeIsCloudEvents) {
  Json e = Approved();
  EXPECT_EQ(e["specversion"], "1.0");
  EXPECT_EQ(e["type"], "io.takt.model.version.approved");
  EXPECT_EQ(e["data"]["group"], "weld-pm");
}

TEST(PatternTest, ExactValuesArraysAreOrFieldsAreAnd) {
  EXPECT_TRUE(Match(R"({"type": ["io.takt.model.version.approved"]})"));
  EXPECT_TRUE(Match(R"({"type": ["io.takt.model.version.rejected", "io.takt.model.version.approved"]})"));
  EXPECT_FALSE(Match(R"({"type": ["io.takt.model.version.rejected"]})"));
  EXPECT_TRUE(Match(R"({"type": ["io.takt.model.version.approved"], "data": {"group": ["weld-pm"]}})"));
  EXPECT_FALSE(Match(R"({"type": ["io.takt.model.version.approved"], "data": {"group": ["paint"]}})"));
  EXPECT_TRUE(Match(R"({"data": {"version": [3]}})"));
  EXPECT_TRUE(Match(R"({"data": {"version": [3.0]}})"));
  EXPECT_FALSE(Match(R"({"data": {"version": ["3"]}})"));  // types differ
  EXPECT_TRUE(Match(R"({})"));                             // matches everything
}

TEST(PatternTest, PrefixAnythingButNumericExists) {
  EXPECT_TRUE(Match(R"({"subject": [{"prefix": "models/weld-"}]})"));
  EXPECT_FALSE(Match(R"({"subject": [{"prefix": "models/paint-"}]})"));
  EXPECT_TRUE(Match(R"({"data": {"stage": [{"anything-but": "prod"}]}})"));
  EXPECT_FALSE(Match(R"({"data": {"stage": [{"anything-but": ["prod", "dev"]}]}})"));
  EXPECT_FALSE(Match(R"({"data": {"stage": [{"anything-but": {"prefix": "de"}}]}})"));
  EXPECT_FALSE(
      Match(R"({"data": {"missing": [{"anything-but": "x"}]}})"));  // absent fields match only exists:false
  EXPECT_TRUE(Match(R"({"data": {"metrics": {"auc": [{"numeric": [">=", 0.9]}]}}})"));
  EXPECT_TRUE(Match(R"({"data": {"metrics": {"auc": [{"numeric": [">", 0.9, "<=", 0.95]}]}}})"));
  EXPECT_FALSE(Match(R"({"data": {"metrics": {"auc": [{"numeric": [">", 0.95]}]}}})"));
  EXPECT_FALSE(Match(R"({"data": {"group": [{"numeric": [">", 0]}]}})"));  // not a number
  EXPECT_TRUE(Match(R"({"data": {"group": [{"exists": true}], "missing": [{"exists": false}]}})"));
  EXPECT_TRUE(Match(R"({"data": {"comment": [{"exists": false}]}})"));  // null counts as absent
  EXPECT_FALSE(Match(R"({"data": {"group": [{"exists": false}]}})"));
  EXPECT_FALSE(Match(R"({"data": {"missing": [{"exists": true}]}})"));
  // One matcher of the list suffices.
  EXPECT_TRUE(Match(R"({"data": {"stage": [{"prefix": "pr"}, "dev"]}})"));
}

TEST(PatternTest, ArrayFieldsMatchWhenAnElementDoes) {
  EXPECT_TRUE(Match(R"({"data": {"tags": ["plant-2"]}})"));
  EXPECT_TRUE(Match(R"({"data": {"tags": [{"prefix": "weld"}]}})"));
  EXPECT_FALSE(Match(R"({"data": {"tags": ["plant-9"]}})"));
  EXPECT_TRUE(Match(R"({"data": {"tags": [{"exists": true}]}})"));
  // Nested objects need the event's field to be an object.
  EXPECT_FALSE(Match(R"({"data": {"group": {"name": ["weld-pm"]}}})"));
}

void ExpectBad(const std::string& pattern, const std::string& fragment) {
  auto p = Pattern::ParseText(pattern);
  ASSERT_FALSE(p.has_value()) << "accepted: " << pattern;
  EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(p.error().message(), HasSubstr(fragment));
}

TEST(PatternTest, BadPatternsNameThePath) {
  ExpectBad("{", "not valid JSON");
  ExpectBad("[]", "pattern must be an object");
  ExpectBad(R"({"type": "io.takt.model.version.approved"})", "pattern.type must be a list of matchers");
  ExpectBad(R"({"type": []})", "pattern.type is an empty list");
  ExpectBad(R"({"data": {}})", "pattern.data is an empty object");
  ExpectBad(R"({"data": {"auc": [{"numeric": [">=", "high"]}]}})", "pattern.data.auc[0]: numeric bound");
  ExpectBad(R"({"data": {"auc": [{"numeric": ["~", 1]}]}})", "numeric operator \"~\"");
  ExpectBad(R"({"data": {"auc": [{"numeric": [">"]}]}})", "numeric needs an operator and a number");
  ExpectBad(R"({"x": [{"prefix": 3}]})", "prefix must be a string");
  ExpectBad(R"({"x": [{"exists": "yes"}]})", "exists must be true or false");
  ExpectBad(R"({"x": [{"suffix": "a"}]})", "unknown matcher 'suffix'");
  ExpectBad(R"({"x": [{"prefix": "a", "exists": true}]})", "an object with one of");
  ExpectBad(R"({"x": [{"anything-but": [{"prefix": "a"}]}]})", "anything-but lists values only");
  ExpectBad(R"({"x": [[1]]})", "a matcher is a value");
}

}  // namespace
}  // namespace takt::events
