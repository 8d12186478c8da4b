// File: iam/sigv4.h
//
// AWS Signature Version 4 (AWS4-HMAC-SHA256), the verifying side: what lets
// an unchanged AWS SDK (boto3's `sagemaker-runtime` client) call takt with an
// access key takt issued (IamService::CreateAccessKey).
//
// Pure functions, no I/O and no clock of their own: the caller passes the
// request as it came over the wire, the secret, the body and "now". A request
// is accepted when
//   - the Authorization header parses (ParseAuthorization),
//   - x-amz-date is present and within 15 minutes of now, the credential
//     scope's date is x-amz-date's date, the scope's service is the expected
//     one and ends in aws4_request, and `host` is among the signed headers
//     (CheckScope),
//   - the payload hash is the SHA-256 of the body: either the
//     x-amz-content-sha256 header (which must then match the body) or, without
//     that header, the hash of the body itself; UNSIGNED-PAYLOAD and streaming
//     payloads are refused (PayloadHash),
//   - the signature over the canonical request equals the one sent, compared
//     in constant time (Verify).
//
// Errors carry their kind in the code, for the caller to map onto the AWS
// error types: InvalidArgument = a malformed header (IncompleteSignature),
// PermissionDenied = a well-formed request whose signature, scope or time is
// wrong (InvalidSignature).
//
// The canonical URI is built from the raw request target (as sent, still
// percent-encoded), encoded once more, as botocore does for every service but
// S3; the query string is decoded and re-encoded pair by pair and sorted.
//
// Thread-safe: no state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::iam::sigv4 {

inline constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
inline constexpr int64_t kMaxClockSkewSeconds = 15 * 60;

// True if an Authorization header value claims SigV4 ("AWS4-HMAC-SHA256 ...").
bool IsSigV4(std::string_view authorization);

struct Authorization {
  std::string access_key_id;                // "TKIA..."
  std::string date;                         // scope date, "20261201"
  std::string region;                       // "us-east-1"
  std::string service;                      // "sagemaker"
  std::string terminator;                   // "aws4_request"
  std::vector<std::string> signed_headers;  // lowercase, in the order sent
  std::string signature;                    // 64 lowercase hex characters

  // "20261201/us-east-1/sagemaker/aws4_request"
  std::string Scope() const;
};

// "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/sagemaker/aws4_request,
//  SignedHeaders=host;x-amz-date, Signature=<hex>". InvalidArgument says what
// is missing or malformed.
Result<Authorization> ParseAuthorization(std::string_view header);

// What the signature covers, as the request came over the wire.
struct SignedRequest {
  std::string method;  // "POST"
  std::string target;  // raw target: path and query, percent-encoded as sent
  std::map<std::string, std::string, std::less<>> headers;  // lowercase names
};

// RFC 3986 percent-encoding of everything but A-Z a-z 0-9 - _ . ~ (and '/'
// when keep_slash), uppercase hex: AWS's UriEncode.
std::string UriEncode(std::string_view text, bool keep_slash);
// The raw path encoded once more ("/" for an empty path).
std::string CanonicalUri(std::string_view raw_path);
// Pairs decoded, re-encoded, sorted by name then value, joined with '&'.
// InvalidArgument for a bad percent escape.
Result<std::string> CanonicalQuery(std::string_view raw_query);
// Trimmed, inner runs of spaces collapsed to one (the case is kept).
std::string CanonicalHeaderValue(std::string_view value);
// method \n uri \n query \n headers \n \n signed-headers \n payload-hash.
// InvalidArgument if a signed header is not in the request.
Result<std::string> CanonicalRequest(const SignedRequest& request,
                                     const std::vector<std::string>& signed_headers,
                                     std::string_view payload_hash);
// "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of canonical request>".
std::string StringToSign(std::string_view amz_date, std::string_view scope,
                         std::string_view canonical_request);
// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"); raw bytes.
std::string SigningKey(std::string_view secret, std::string_view date, std::string_view region,
                       std::string_view service);

// "20261201T103000Z" as seconds since the epoch; InvalidArgument otherwise.
Result<int64_t> ParseAmzDate(std::string_view amz_date);
// The checks that need neither the secret nor the body (see the file comment).
Status CheckScope(const Authorization& auth, const SignedRequest& request, int64_t now_seconds,
                  std::string_view service);
// The payload hash the signature is computed over, or the error refusing it.
Result<std::string> PayloadHash(const SignedRequest& request, std::string_view body);
// The signature the request should carry, as lowercase hex.
Result<std::string> ExpectedSignature(const Authorization& auth, const SignedRequest& request,
                                      std::string_view secret, std::string_view body);
// CheckScope, PayloadHash, then the signature (constant-time compare).
// PermissionDenied "the request signature does not match ..." on a mismatch.
Status Verify(const Authorization& auth, const SignedRequest& request, std::string_view secret,
              std::string_view body, int64_t now_seconds, std::string_view service);

}  // namespace takt::iam::sigv4
