#include "http/message.h"

#include <gtest/gtest.h>

#include "core/json.h"

namespace takt::http {
namespace {

TEST(MessageTest, ErrorResponseCarriesCodeMessageAndStatus) {
  Response response = ErrorResponse(NotFound("model group weld-pm has no version 7"));
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.content_type, "application/json");
  auto json = ParseJson(response.body, "error body");
  ASSERT_TRUE(json);
  EXPECT_EQ((*json)["error"]["code"], "NOT_FOUND");
  EXPECT_EQ((*json)["error"]["message"], "model group weld-pm has no version 7");

  Response not_allowed = ErrorResponse(405, "METHOD_NOT_ALLOWED", "no");
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_EQ((*ParseJson(not_allowed.body, "body"))["error"]["code"], "METHOD_NOT_ALLOWED");
}

TEST(MessageTest, ErrorResponseEscapesAndSurvivesInvalidUtf8) {
  Response response = ErrorResponse(InvalidArgument("bad \"name\"\n\xFF\xFE"));
  EXPECT_EQ(response.status, 400);
  auto json = ParseJson(response.body, "error body");
  ASSERT_TRUE(json);
  EXPECT_EQ((*json)["error"]["code"], "INVALID_ARGUMENT");
}

TEST(MessageTest, JsonResponseKeepsBody) {
  Response response = JsonResponse(201, R"({"id":3})");
  EXPECT_EQ(response.status, 201);
  EXPECT_EQ(response.body, R"({"id":3})");
  EXPECT_EQ(response.content_type, "application/json");
}

TEST(MessageTest, RequestAccessors) {
  Request request;
  request.headers = {{"authorization", "Bearer t"}, {"content-type", "application/json ; charset=utf-8"}};
  request.query = {{"limit", "10"}, {"tag", "a"}, {"tag", "b"}};
  EXPECT_EQ(request.Header("Authorization"), "Bearer t");
  EXPECT_EQ(request.Header("AUTHORIZATION"), "Bearer t");
  EXPECT_EQ(request.Header("x-missing"), "");
  EXPECT_EQ(request.ContentType(), "application/json");
  EXPECT_EQ(request.Query("limit"), "10");
  EXPECT_EQ(request.Query("tag"), "a");
  EXPECT_EQ(request.Query("nope"), std::nullopt);
  request.headers.erase("content-type");
  EXPECT_EQ(request.ContentType(), "");
}

}  // namespace
}  // namespace takt::http
