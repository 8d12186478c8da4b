// File: api/sigv4_auth.h
//
// The before hook's second way in: AWS Signature Version 4 with an access key
// takt issued, so boto3's `sagemaker-runtime` client (pointed at takt with
// endpoint_url) calls the SageMaker-shaped routes unchanged.
//
// Only routes under /endpoints/ accept it (401 elsewhere), and not
// stream_body routes. Before the body is read: the header is parsed, the key
// looked up (an active key → its principal), the time, scope and signed
// headers checked, and the route's action authorized as for a token (default
// deny, explicit deny wins). Because the signature covers the body, the rest
// waits for it: the hook sets Request::verify_body, which the server calls
// once the body is in and before the handler runs.
//
// Refusals are SageMaker-typed so botocore maps them onto its error codes: a
// header x-amzn-ErrorType (InvalidSignatureException, UnrecognizedClient-
// Exception, IncompleteSignatureException, AccessDeniedException) and a body
// with a top-level "message" beside takt's usual "error" object (which the
// audit reads).
//
// Limits: header values are compared as the server stores them (the media
// type of Content-Type lowercased, repeated headers joined with ", ").
#pragma once

#include <optional>
#include <string_view>

#include "api/platform.h"
#include "http/message.h"
#include "http/router.h"

namespace takt::api {

// True if the request's Authorization header claims AWS4-HMAC-SHA256.
bool IsSigV4Request(const http::Request& req);

// The before hook for a SigV4 request: a refusal, or nullopt with
// req.principal_id and req.verify_body set.
std::optional<http::Response> AuthenticateSigV4(Platform& p, const http::Route& route, http::Request& req);

// {"message": ..., "error": {"code", "message"}} with x-amzn-ErrorType: type.
http::Response SageMakerErrorResponse(int status, std::string_view type, const Error& error);

}  // namespace takt::api
