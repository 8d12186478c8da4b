#include "api/sigv4_auth.h"

#include <memory>
#include <string>
#include <utility>

#include "core/json.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "iam/sigv4.h"

namespace takt::api {
namespace {

constexpr std::string_view kSigV4Prefix = "/endpoints/";
constexpr std::string_view kService = "sagemaker";

// The secret, wiped when the last copy of the verifier goes.
struct HeldSecret {
  std::string value;
  explicit HeldSecret(std::string v) : value(std::move(v)) {}
  HeldSecret(const HeldSecret&) = delete;
  HeldSecret& operator=(const HeldSecret&) = delete;
  ~HeldSecret() { crypto::SecureErase(value); }
};

// The AWS error type for a failed SigV4 check, by the code iam/sigv4.h uses.
http::Response SignatureRefusal(const Error& error) {
  if (error.code() == Code::kInvalidArgument)
    return SageMakerErrorResponse(400, "IncompleteSignatureException", error);
  if (error.code() == Code::kPermissionDenied)
    return SageMakerErrorResponse(403, "InvalidSignatureException", error);
  return SageMakerErrorResponse(HttpStatus(error.code()), "InternalFailure", error);
}

}  // namespace

bool IsSigV4Request(const http::Request& req) { return iam::sigv4::IsSigV4(req.Header("authorization")); }

http::Response SageMakerErrorResponse(int status, std::string_view type, const Error& error) {
  Json body = {{"message", error.message()},
               {"error", {{"code", std::string(CodeName(error.code()))}, {"message", error.message()}}}};
  http::Response r = http::JsonResponse(status, body.dump());
  r.headers.emplace_back("x-amzn-ErrorType", std::string(type));
  return r;
}

std::optional<http::Response> AuthenticateSigV4(Platform& p, const http::Route& route, http::Request& req) {
  req.principal_id = "anonymous";
  if (route.pattern.rfind(kSigV4Prefix, 0) != 0 || route.stream_body) {
    return http::ErrorResponse(
        Unauthenticated("AWS Signature V4 is accepted on /endpoints/... only: send 'Authorization: Bearer "
                        "<token>' for " +
                        route.method + " " + route.pattern));
  }
  auto auth = iam::sigv4::ParseAuthorization(req.Header("authorization"));
  if (!auth) return SignatureRefusal(auth.error());
  auto key = p.iam->AccessKeySecret(auth->access_key_id);
  if (!key) {
    if (key.error().code() == Code::kUnauthenticated)
      return SageMakerErrorResponse(403, "UnrecognizedClientException", key.error());
    return SageMakerErrorResponse(HttpStatus(key.error().code()), "InternalFailure",
                                  key.error().WithContext("access key " + auth->access_key_id));
  }
  auto secret = std::make_shared<const HeldSecret>(std::move(key->second));
  const iam::Principal& principal = key->first;

  iam::sigv4::SignedRequest signed_request{req.method, req.target, req.headers};
  const int64_t now_seconds = RealClock().NowMillis() / 1000;
  if (auto s = iam::sigv4::CheckScope(*auth, signed_request, now_seconds, kService); !s)
    return SignatureRefusal(s.error().WithContext("access key " + auth->access_key_id));
  // Refused before the body is read: the payload must be signed.
  const std::string declared(req.Header("x-amz-content-sha256"));
  if (declared == "UNSIGNED-PAYLOAD" || declared.rfind("STREAMING-", 0) == 0) {
    return SignatureRefusal(
        PermissionDenied("the payload must be signed: x-amz-content-sha256 " + declared + " is not accepted")
            .error());
  }

  // The signature is not verified yet: audit records of refusals until then
  // name the principal the key belongs to.
  req.principal_id = principal.name;
  iam::Decision d = iam::Authorize(principal, route.action);
  if (!d.allowed)
    return SageMakerErrorResponse(403, "AccessDeniedException", PermissionDenied(d.reason).error());

  req.verify_body = [auth = std::move(*auth), signed_request = std::move(signed_request), secret,
                     now_seconds](std::string_view body) -> std::optional<http::Response> {
    auto s = iam::sigv4::Verify(auth, signed_request, secret->value, body, now_seconds, kService);
    if (!s) return SignatureRefusal(s.error().WithContext("access key " + auth.access_key_id));
    return std::nullopt;
  };
  return std::nullopt;
}

}  // namespace takt::api
