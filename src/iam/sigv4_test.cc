// SigV4 verification against vectors computed once, offline, with botocore's
// own signer (botocore.auth.SigV4Auth, service "sagemaker", region
// us-east-1, the clock fixed at 2026-12-01T10:30:00Z) over the requests below;
// the key pair is made up for this test.
#include "iam/sigv4.h"

#include <gtest/gtest.h>

#include "crypto/crypto.h"

namespace takt::iam::sigv4 {
namespace {

constexpr const char* kKeyId = "TKIA7QXN2M4P5R6S3T2U";
constexpr const char* kSecret = "k3Vq9zR2tLw8Yp1sXc7Bn4Mh6Jd0Fg5Ha2Se9Uo1";
constexpr int64_t kNow = 1796121000;  // 2026-12-01T10:30:00Z
constexpr const char* kCsvBody = "0.5,0.6,0.7\n";
constexpr const char* kCsvSignature = "4349f8b36612d121db1a77bed8f24cae73f698a77e047900597ebabe5b5a6981";

std::string AuthHeader(const std::string& signed_headers, const std::string& signature,
                       const std::string& scope = "20261201/us-east-1/sagemaker/aws4_request") {
  return std::string("AWS4-HMAC-SHA256 Credential=") + kKeyId + "/" + scope +
         ", SignedHeaders=" + signed_headers + ", Signature=" + signature;
}

SignedRequest CsvRequest() {
  return {"POST",
          "/endpoints/weld-pm-dev/invocations",
          {{"content-type", "text/csv"},
           {"host", "127.0.0.1:8080"},
           {"x-amz-date", "20261201T103000Z"},
           {"content-length", "12"},
           {"user-agent", "Boto3/1.34"}}};
}

TEST(SigV4, ParsesTheAuthorizationHeaderBotocoreSends) {
  auto a = ParseAuthorization(AuthHeader("content-type;host;x-amz-date", kCsvSignature));
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  EXPECT_EQ(a->access_key_id, kKeyId);
  EXPECT_EQ(a->date, "20261201");
  EXPECT_EQ(a->region, "us-east-1");
  EXPECT_EQ(a->service, "sagemaker");
  EXPECT_EQ(a->Scope(), "20261201/us-east-1/sagemaker/aws4_request");
  EXPECT_EQ(a->signed_headers, (std::vector<std::string>{"content-type", "host", "x-amz-date"}));
  EXPECT_EQ(a->signature, kCsvSignature);
  EXPECT_TRUE(IsSigV4("AWS4-HMAC-SHA256 Credential=x"));
  EXPECT_FALSE(IsSigV4("Bearer takt_abc"));
  EXPECT_FALSE(IsSigV4("AWS4-HMAC-SHA256"));
}

TEST(SigV4, RefusesMalformedAuthorizationHeadersAsInvalidArgument) {
  for (const std::string& bad : {
           std::string("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=") + kCsvSignature,
           AuthHeader("host", "abc"),
           AuthHeader("host", kCsvSignature, "20261201/us-east-1/sagemaker"),
           AuthHeader("host", kCsvSignature, "20261201/us-east-1/sagemaker/aws5_request"),
           std::string("AWS4-HMAC-SHA256 Credential=") + kKeyId +
               "/20261201/us-east-1/sagemaker/aws4_request",
           std::string("AWS4-HMAC-SHA256 garbage"),
       }) {
    auto a = ParseAuthorization(bad);
    ASSERT_FALSE(a.has_value()) << bad;
    EXPECT_EQ(a.error().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(SigV4, CanonicalRequestEncodesThePathTwiceSortsTheQueryAndTrimsHeaders) {
  SignedRequest req{"POST",
                    "/endpoints/weld%20pm/invocations?b=2&a=x%2Fy&a=1",
                    {{"content-type", "application/json"},
                     {"host", "127.0.0.1:8080"},
                     {"x-amz-date", "20261201T103000Z"},
                     {"x-amzn-sagemaker-custom-attributes", "  trace  id=7 "}}};
  auto cr =
      CanonicalRequest(req, {"content-type", "host", "x-amz-date", "x-amzn-sagemaker-custom-attributes"},
                       crypto::Sha256Hex("{}"));
  ASSERT_TRUE(cr.has_value()) << cr.error().ToString();
  EXPECT_EQ(
      *cr,
      "POST\n/endpoints/weld%2520pm/invocations\na=1&a=x%2Fy&b=2\ncontent-type:application/json\nhost:127.0."
      "0.1:8080\nx-amz-date:20261201T103000Z\nx-amzn-sagemaker-custom-attributes:trace "
      "id=7\n\ncontent-type;host;x-amz-date;x-amzn-sagemaker-custom-attributes\n"
      "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  auto missing = CanonicalRequest(req, {"host", "x-amz-target"}, "");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(UriEncode("a b/c~d+e", false), "a%20b%2Fc~d%2Be");
  EXPECT_EQ(CanonicalUri(""), "/");
  EXPECT_EQ(*CanonicalQuery("x=a+b&flag"), "flag=&x=a%2Bb");
  EXPECT_FALSE(CanonicalQuery("x=%zz").has_value());
}

TEST(SigV4, SignaturesEqualBotocores) {
  auto a = ParseAuthorization(AuthHeader("content-type;host;x-amz-date", kCsvSignature));
  ASSERT_TRUE(a.has_value());
  auto sig = ExpectedSignature(*a, CsvRequest(), kSecret, kCsvBody);
  ASSERT_TRUE(sig.has_value()) << sig.error().ToString();
  EXPECT_EQ(*sig, kCsvSignature);
  EXPECT_TRUE(Verify(*a, CsvRequest(), kSecret, kCsvBody, kNow, "sagemaker").has_value());

  // The second request: an encoded path, a query string and a header with inner spaces.
  constexpr const char* kJsonSignature = "a512a9400e680571eff13ca36278dfa64b05220d1d4e7de032c86630138452af";
  SignedRequest req{"POST",
                    "/endpoints/weld%20pm/invocations?b=2&a=x%2Fy&a=1",
                    {{"content-type", "application/json"},
                     {"host", "127.0.0.1:8080"},
                     {"x-amz-date", "20261201T103000Z"},
                     {"x-amzn-sagemaker-custom-attributes", "  trace  id=7 "}}};
  auto b = ParseAuthorization(
      AuthHeader("content-type;host;x-amz-date;x-amzn-sagemaker-custom-attributes", kJsonSignature));
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(Verify(*b, req, kSecret, "{}", kNow, "sagemaker").has_value());
}

TEST(SigV4, RefusesAnotherSecretBodyOrHeaderAsPermissionDenied) {
  auto a = ParseAuthorization(AuthHeader("content-type;host;x-amz-date", kCsvSignature));
  ASSERT_TRUE(a.has_value());
  auto wrong_secret =
      Verify(*a, CsvRequest(), "k3Vq9zR2tLw8Yp1sXc7Bn4Mh6Jd0Fg5Ha2Se9Uo2", kCsvBody, kNow, "sagemaker");
  ASSERT_FALSE(wrong_secret.has_value());
  EXPECT_EQ(wrong_secret.error().code(), Code::kPermissionDenied);
  EXPECT_NE(wrong_secret.error().message().find("does not match"), std::string::npos);

  auto tampered = Verify(*a, CsvRequest(), kSecret, "0.9,0.6,0.7\n", kNow, "sagemaker");
  ASSERT_FALSE(tampered.has_value());
  EXPECT_EQ(tampered.error().code(), Code::kPermissionDenied);

  SignedRequest other_type = CsvRequest();
  other_type.headers["content-type"] = "application/json";
  EXPECT_EQ(Verify(*a, other_type, kSecret, kCsvBody, kNow, "sagemaker").error().code(),
            Code::kPermissionDenied);
  // Headers that were not signed may change.
  SignedRequest other_agent = CsvRequest();
  other_agent.headers["user-agent"] = "curl";
  EXPECT_TRUE(Verify(*a, other_agent, kSecret, kCsvBody, kNow, "sagemaker").has_value());
}

TEST(SigV4, ChecksTimeScopeServiceAndHost) {
  auto a = ParseAuthorization(AuthHeader("content-type;host;x-amz-date", kCsvSignature));
  ASSERT_TRUE(a.has_value());
  // 15 minutes either way are fine, 15 minutes and a second are not.
  EXPECT_TRUE(CheckScope(*a, CsvRequest(), kNow + 15 * 60, "sagemaker").has_value());
  EXPECT_TRUE(CheckScope(*a, CsvRequest(), kNow - 15 * 60, "sagemaker").has_value());
  auto late = CheckScope(*a, CsvRequest(), kNow + 15 * 60 + 1, "sagemaker");
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code(), Code::kPermissionDenied);
  EXPECT_NE(late.error().message().find("Signature expired"), std::string::npos);
  EXPECT_EQ(CheckScope(*a, CsvRequest(), kNow - 16 * 60, "sagemaker").error().code(),
            Code::kPermissionDenied);

  EXPECT_EQ(CheckScope(*a, CsvRequest(), kNow, "s3").error().code(), Code::kPermissionDenied);

  auto other_day = ParseAuthorization(
      AuthHeader("content-type;host;x-amz-date", kCsvSignature, "20261130/us-east-1/sagemaker/aws4_request"));
  ASSERT_TRUE(other_day.has_value());
  EXPECT_EQ(CheckScope(*other_day, CsvRequest(), kNow, "sagemaker").error().code(), Code::kPermissionDenied);

  auto no_host = ParseAuthorization(AuthHeader("content-type;x-amz-date", kCsvSignature));
  ASSERT_TRUE(no_host.has_value());
  EXPECT_EQ(CheckScope(*no_host, CsvRequest(), kNow, "sagemaker").error().code(), Code::kInvalidArgument);

  SignedRequest undated = CsvRequest();
  undated.headers.erase("x-amz-date");
  EXPECT_EQ(CheckScope(*a, undated, kNow, "sagemaker").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(*ParseAmzDate("20261201T103000Z"), kNow);
  EXPECT_FALSE(ParseAmzDate("2026-12-01T10:30:00Z").has_value());
  EXPECT_FALSE(ParseAmzDate("20261301T103000Z").has_value());
}

TEST(SigV4, TheDeclaredPayloadHashMustMatchTheBodyAndUnsignedPayloadIsRefused) {
  SignedRequest req = CsvRequest();
  req.headers["x-amz-content-sha256"] = crypto::Sha256Hex(kCsvBody);
  EXPECT_EQ(*PayloadHash(req, kCsvBody), crypto::Sha256Hex(kCsvBody));
  auto other = PayloadHash(req, "something else");
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), Code::kPermissionDenied);
  for (const char* policy : {"UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}) {
    req.headers["x-amz-content-sha256"] = policy;
    auto refused = PayloadHash(req, kCsvBody);
    ASSERT_FALSE(refused.has_value()) << policy;
    EXPECT_EQ(refused.error().code(), Code::kPermissionDenied);
    EXPECT_NE(refused.error().message().find("must be signed"), std::string::npos);
  }
  req.headers.erase("x-amz-content-sha256");
  EXPECT_EQ(*PayloadHash(req, ""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace takt::iam::sigv4
