// File: events/webhook.h
//
// The "webhook" target: POSTs each event of a rule to a URL, as a CloudEvents
// 1.0 event in structured mode, signed so the receiver can tell it came from
// this takt and was not altered.
//
// Rule config:
//   {"url": "http://host:port/path",   http only (the client has no TLS yet)
//    "secret": "...",                  >= 16 characters; sealed at rest, shown as "set"
//    "timeout_s": 10,                  connect and each read/write, 1-300 (default 10)
//    "headers": {"Name": "value"}}     extra request headers (not Content-Type, Host,
//                                      Content-Length, Transfer-Encoding, Connection, X-Takt-*)
//
// The request:
//   POST /path HTTP/1.1
//   Content-Type: application/cloudevents+json
//   X-Takt-Event-Id: ev-3fa9c2e01b7d             (= the body's "id")
//   X-Takt-Delivery-Attempt: 1                   (1, 2, ... ; starts again at 1 after a replay)
//   X-Takt-Signature: t=1764600000,v1=5d41402abc4b2a76b9719d911017c592...
//   {"specversion":"1.0","id":"ev-...","source":"/registry","type":"io.takt.model.version.approved",
//    "subject":"models/weld-pm/versions/3","time":"...","datacontenttype":"application/json","data":{...}}
//
// Signature scheme (what a receiver checks):
//   t   = the Unix time in seconds when the request was signed;
//   v1  = lowercase hex of HMAC-SHA256(key = the secret's bytes, message = t + "." + body),
//         the body exactly as received (its raw bytes, before any JSON parsing).
//   Recompute v1, compare in constant time, and refuse a t more than a few minutes from
//   now (that stops a captured request being replayed later). Deduplicate on
//   X-Takt-Event-Id: delivery is at least once.
//
// The answer:
//   2xx                                → delivered;
//   408, 429, 5xx, no connection, timeout → retried with the bus's backoff;
//   any other status (3xx, 4xx)        → dead at once (the message has the status and the
//                                        first 200 bytes of the body).
// The secret and the signature never appear in a message or a log line.
//
// Thread-safety: the target may be called from any thread; it keeps one
// keep-alive connection per rule and config, used by one call at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/result.h"
#include "core/time.h"
#include "events/events.h"

namespace takt::events {

inline constexpr const char* kWebhookKind = "webhook";
inline constexpr const char* kCloudEventsJson = "application/cloudevents+json";

struct WebhookConfig {
  std::string url;     // as given
  std::string base;    // "http://host:port"
  std::string target;  // "/path?query", "/" when the URL has none
  std::string secret;
  std::chrono::seconds timeout{10};
  std::map<std::string, std::string> headers;
};

// Checks a rule's config; InvalidArgument naming the field ("config.url: https
// is not supported yet ..."). Never quotes the secret.
Result<WebhookConfig> ParseWebhookConfig(std::string_view config_json);

// "t=<unix_seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>"
std::string WebhookSignature(std::string_view secret, int64_t unix_seconds, std::string_view body);

// The target, to register as kWebhookKind. `clock` (nullptr: the real one) stamps t.
TargetSpec WebhookTarget(const Clock* clock = nullptr);

}  // namespace takt::events
