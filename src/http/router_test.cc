#include "http/router.h"

#include <gtest/gtest.h>

namespace takt::http {
namespace {

Route MakeRoute(std::string method, std::string pattern, std::string action = "test:read") {
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.action = std::move(action);
  route.handler = [](Request&) { return Response{}; };
  return route;
}

TEST(RouterTest, MatchesLiteralPath) {
  Router router;
  router.Add(MakeRoute("GET", "/api/v1/health"));
  std::map<std::string, std::string> params;
  Match match = router.Find("GET", "/api/v1/health", &params);
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(match.route->pattern, "/api/v1/health");
  EXPECT_TRUE(params.empty());
  EXPECT_EQ(router.Find("GET", "/api/v1/health/", &params).route, nullptr);
  EXPECT_EQ(router.Find("GET", "/api/v1", &params).route, nullptr);
}

TEST(RouterTest, FillsPathParameters) {
  Router router;
  router.Add(MakeRoute("GET", "/api/v1/models/{group}/versions/{version}"));
  std::map<std::string, std::string> params;
  Match match = router.Find("GET", "/api/v1/models/weld-pm/versions/7", &params);
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(params.at("group"), "weld-pm");
  EXPECT_EQ(params.at("version"), "7");
  // A parameter never matches an empty segment.
  EXPECT_EQ(router.Find("GET", "/api/v1/models//versions/7", &params).route, nullptr);
}

TEST(RouterTest, RestMatchesTheRemainder) {
  Router router;
  router.Add(MakeRoute("GET", "/blobs/{bucket}/{key...}"));
  std::map<std::string, std::string> params;
  ASSERT_NE(router.Find("GET", "/blobs/raw/plant-a/2024/01.csv", &params).route, nullptr);
  EXPECT_EQ(params.at("bucket"), "raw");
  EXPECT_EQ(params.at("key"), "plant-a/2024/01.csv");
  ASSERT_NE(router.Find("GET", "/blobs/raw/one", &params).route, nullptr);
  EXPECT_EQ(params.at("key"), "one");
  EXPECT_EQ(router.Find("GET", "/blobs/raw", &params).route, nullptr);
  EXPECT_EQ(router.Find("GET", "/blobs/raw/", &params).route, nullptr);
}

TEST(RouterTest, MostSpecificPatternWins) {
  Router router;
  router.Add(MakeRoute("GET", "/models/{rest...}"));
  router.Add(MakeRoute("GET", "/models/{group}"));
  router.Add(MakeRoute("GET", "/models/search"));
  std::map<std::string, std::string> params;
  EXPECT_EQ(router.Find("GET", "/models/search", &params).route->pattern, "/models/search");
  EXPECT_EQ(router.Find("GET", "/models/weld", &params).route->pattern, "/models/{group}");
  EXPECT_EQ(params.at("group"), "weld");
  EXPECT_EQ(router.Find("GET", "/models/weld/v1", &params).route->pattern, "/models/{rest...}");
  EXPECT_EQ(params.at("rest"), "weld/v1");
}

TEST(RouterTest, UnknownPathIsNotFoundAndOtherMethodIsNotAllowed) {
  Router router;
  router.Add(MakeRoute("GET", "/models/{group}"));
  router.Add(MakeRoute("DELETE", "/models/{group}"));
  router.Add(MakeRoute("POST", "/models"));
  std::map<std::string, std::string> params;

  Match missing = router.Find("GET", "/datasets", &params);
  EXPECT_EQ(missing.route, nullptr);
  EXPECT_FALSE(missing.method_not_allowed);

  Match other = router.Find("PUT", "/models/weld", &params);
  EXPECT_EQ(other.route, nullptr);
  EXPECT_TRUE(other.method_not_allowed);
  EXPECT_EQ(other.allow, "GET, DELETE");

  // Methods are case-sensitive.
  EXPECT_TRUE(router.Find("get", "/models/weld", &params).method_not_allowed);
}

TEST(RouterTest, DecodesEachSegmentSoEncodedSlashStaysInAParameter) {
  Router router;
  router.Add(MakeRoute("GET", "/datasets/{name}/rows"));
  std::map<std::string, std::string> params;
  ASSERT_NE(router.Find("GET", "/datasets/weld%20telemetry%2Fv3/rows", &params).route, nullptr);
  EXPECT_EQ(params.at("name"), "weld telemetry/v3");
  // Literal segments compare decoded.
  EXPECT_NE(router.Find("GET", "/datasets/x/r%6Fws", &params).route, nullptr);
  // A malformed escape matches nothing.
  EXPECT_EQ(router.Find("GET", "/datasets/%zz/rows", &params).route, nullptr);
}

TEST(RouterTest, ParamsUntouchedWithoutMatchAndNullParamsAllowed) {
  Router router;
  router.Add(MakeRoute("GET", "/a/{x}"));
  std::map<std::string, std::string> params = {{"keep", "me"}};
  EXPECT_EQ(router.Find("GET", "/b/1", &params).route, nullptr);
  EXPECT_EQ(params.size(), 1u);
  EXPECT_NE(router.Find("GET", "/a/1", nullptr).route, nullptr);
}

TEST(RouterTest, ValidateAcceptsAWellFormedTable) {
  Router router;
  router.Add(MakeRoute("GET", "/models/{group}"));
  Route health = MakeRoute("GET", "/health", "");
  health.is_public = true;
  router.Add(std::move(health));
  EXPECT_TRUE(router.Validate());
  EXPECT_EQ(router.routes().size(), 2u);
}

TEST(RouterTest, ValidateRejectsMalformedTables) {
  auto validate = [](Route route, std::optional<Route> second = std::nullopt) {
    Router router;
    router.Add(std::move(route));
    if (second) router.Add(std::move(*second));
    return router.Validate();
  };
  auto no_action = validate(MakeRoute("GET", "/models", ""));
  ASSERT_FALSE(no_action);
  EXPECT_EQ(no_action.error().code(), Code::kInvalidArgument);
  EXPECT_NE(no_action.error().message().find("GET /models"), std::string::npos);

  EXPECT_FALSE(validate(MakeRoute("GET", "models")));
  EXPECT_FALSE(validate(MakeRoute("GET", "/a/{rest...}/b")));
  EXPECT_FALSE(validate(MakeRoute("GET", "/a/x{id}")));
  EXPECT_FALSE(validate(MakeRoute("GET", "/a/{}")));
  EXPECT_FALSE(validate(MakeRoute("GET", "/a/{id}/{id}")));
  Route no_handler = MakeRoute("GET", "/a");
  no_handler.handler = nullptr;
  EXPECT_FALSE(validate(std::move(no_handler)));
  auto duplicate = validate(MakeRoute("GET", "/a/{x}"), MakeRoute("GET", "/a/{y}"));
  ASSERT_FALSE(duplicate);
  EXPECT_NE(duplicate.error().message().find("declared twice"), std::string::npos);
  EXPECT_TRUE(validate(MakeRoute("GET", "/a/{x}"), MakeRoute("POST", "/a/{y}")));
}

}  // namespace
}  // namespace takt::http
