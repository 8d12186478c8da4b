// The webhook target: see webhook.h.
#include "events/webhook.h"

#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "core/json.h"
#include "crypto/crypto.h"
#include "events/pattern.h"
#include "http/client.h"
#include "http/message.h"

namespace takt::events {
namespace {

constexpr size_t kMinSecret = 16;
constexpr int kMaxTimeout = 300;
constexpr size_t kBodyExcerpt = 200;
constexpr size_t kMaxCachedClients = 64;

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool ReservedHeader(std::string_view name) {
  static const std::set<std::string> kReserved = {"content-type", "content-length", "transfer-encoding",
                                                  "host", "connection"};
  const std::string lower = http::ToLower(name);
  return kReserved.contains(lower) || lower.starts_with("x-takt-");
}

// The first bytes of a response body, printable, for a message.
std::string Excerpt(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, kBodyExcerpt)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  }
  if (body.size() > kBodyExcerpt) out += "...";
  return out;
}

// The http client words its errors for the CLI talking to a takt server.
std::string ExchangeError(const Error& e) {
  std::string m = e.message();
  if (auto hint = m.find("; is `takt server` running?"); hint != std::string::npos) m.resize(hint);
  const std::string_view prefix = "cannot reach takt server at ";
  if (m.starts_with(prefix)) m = "cannot reach " + m.substr(prefix.size());
  return m;
}

struct Connection {
  WebhookConfig config;
  http::Client client;
};

struct State {
  const Clock* clock;
  std::mutex mu;  // one call at a time: Client is not thread-safe
  // One keep-alive connection per rule and config (the headers are the config's).
  std::map<std::string, Connection> connections;
};

Outcome Retry(Error e) { return std::unexpected(Failure{std::move(e), false}); }
Outcome GiveUp(Error e) { return std::unexpected(Failure{std::move(e), true}); }

Outcome Deliver(State& st, const Event& event, const Rule& rule, int attempt) {
  std::lock_guard<std::mutex> lock(st.mu);
  const std::string key = rule.name + "\n" + rule.target_config_json;
  auto it = st.connections.find(key);
  if (it == st.connections.end()) {
    // Checked at PutRule: only a hand-edited row fails here.
    auto config = ParseWebhookConfig(rule.target_config_json);
    if (!config) return GiveUp(config.error());
    auto client = http::Client::Create(config->base);
    if (!client) return GiveUp(client.error().WithContext("config.url"));
    for (const auto& [name, value] : config->headers) client->SetHeader(name, value);
    client->SetTimeout(config->timeout);
    if (st.connections.size() >= kMaxCachedClients) st.connections.clear();
    it = st.connections.emplace(key, Connection{std::move(*config), std::move(*client)}).first;
  }
  const WebhookConfig& config = it->second.config;
  http::Client& client = it->second.client;
  const std::string body = Envelope(event).dump();
  const int64_t t = st.clock->NowMillis() / 1000;
  client.SetHeader("X-Takt-Event-Id", event.id);
  client.SetHeader("X-Takt-Delivery-Attempt", std::to_string(attempt));
  client.SetHeader("X-Takt-Signature", WebhookSignature(config.secret, t, body));
  auto response = client.Send("POST", config.target, body, kCloudEventsJson);
  const std::string where = "webhook POST " + config.url;
  if (!response) {
    Error e(Code::kUnavailable, where + ": " + ExchangeError(response.error()));
    st.connections.erase(it);
    return Retry(std::move(e));
  }
  const int status = response->status;
  if (status >= 200 && status < 300) return {};
  const std::string answer = where + " answered " + std::to_string(status) +
                             (response->body.empty() ? "" : ": " + Excerpt(response->body));
  if (status == 408 || status == 429 || status >= 500) return Retry(Error(Code::kUnavailable, answer));
  return GiveUp(Error(Code::kFailedPrecondition,
                      answer + " (not retried: fix the receiver or the rule, then replay the event)"));
}

}  // namespace

Result<WebhookConfig> ParseWebhookConfig(std::string_view config_json) {
  Json j = Json::parse(config_json, nullptr, false);
  if (!j.is_object()) return InvalidArgument("config must be a JSON object with url and secret");
  for (const auto& [key, _] : j.items()) {
    if (key != "url" && key != "secret" && key != "timeout_s" && key != "headers") {
      return InvalidArgument("config." + key +
                             " is not a webhook setting (known: url, secret, timeout_s, headers)");
    }
  }
  WebhookConfig c;
  if (!j.contains("url") || !j["url"].is_string() || j["url"].get<std::string>().empty()) {
    return InvalidArgument("config.url is required: the receiver, e.g. \"http://10.0.0.5:9000/takt-events\"");
  }
  c.url = j["url"].get<std::string>();
  const std::string lower = http::ToLower(c.url);
  if (lower.starts_with("https://")) {
    return InvalidArgument(
        "config.url: https is not supported yet (the HTTP client has no TLS); use an "
        "http:// URL on a trusted network, e.g. a TLS-terminating proxy beside takt");
  }
  if (!lower.starts_with("http://")) {
    return InvalidArgument("config.url '" + c.url + "' must start with http://");
  }
  if (c.url.find_first_of(" \t\r\n#") != std::string::npos) {
    return InvalidArgument("config.url '" + c.url + "' must not contain spaces or a #fragment");
  }
  const std::string rest = c.url.substr(7);
  const size_t slash = rest.find_first_of("/?");
  c.base = "http://" + rest.substr(0, slash);
  c.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (c.target.front() == '?') c.target = "/" + c.target;
  if (auto probe = http::Client::Create(c.base); !probe) {
    return InvalidArgument("config.url '" + c.url + "': " + probe.error().message());
  }

  if (!j.contains("secret") || !j["secret"].is_string()) {
    return InvalidArgument(
        "config.secret is required: a string of at least 16 characters that signs every "
        "delivery (e.g. the output of `openssl rand -hex 32`)");
  }
  c.secret = j["secret"].get<std::string>();
  if (c.secret.size() < kMinSecret) {
    return InvalidArgument("config.secret is " + std::to_string(c.secret.size()) +
                           " characters long: it needs at least 16 (e.g. `openssl rand -hex 32`)");
  }

  if (j.contains("timeout_s")) {
    const Json& t = j["timeout_s"];
    if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > kMaxTimeout) {
      return InvalidArgument("config.timeout_s must be a whole number of seconds in [1, 300], not " +
                             t.dump());
    }
    c.timeout = std::chrono::seconds(t.get<int64_t>());
  }

  if (j.contains("headers")) {
    const Json& h = j["headers"];
    if (!h.is_object()) return InvalidArgument("config.headers must map header names to string values");
    for (const auto& [name, value] : h.items()) {
      const std::string where = "config.headers." + name;
      if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) {
        return InvalidArgument(where + ": not a valid header name");
      }
      if (ReservedHeader(name)) {
        return InvalidArgument(where +
                               ": takt sets this header itself (Content-Type, Content-Length, "
                               "Transfer-Encoding, Host, Connection and X-Takt-* are reserved)");
      }
      if (!value.is_string()) return InvalidArgument(where + " must be a string");
      const std::string v = value.get<std::string>();
      if (v.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
        return InvalidArgument(where + " must not contain line breaks or NUL");
      }
      c.headers[name] = v;
    }
  }
  return c;
}

std::string WebhookSignature(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  const std::string t = std::to_string(unix_seconds);
  std::string message;
  message.reserve(t.size() + 1 + body.size());
  message += t;
  message += '.';
  message += body;
  return "t=" + t + ",v1=" + crypto::HmacSha256Hex(secret, message);
}

TargetSpec WebhookTarget(const Clock* clock) {
  auto state = std::make_shared<State>();
  state->clock = clock != nullptr ? clock : &RealClock();
  TargetSpec spec;
  spec.deliver = [state](const Event& e, const Rule& r, int attempt) {
    return Deliver(*state, e, r, attempt);
  };
  spec.check = [](const Rule& r) -> Status {
    TAKT_RETURN_IF_ERROR(ParseWebhookConfig(r.target_config_json));
    return Ok();
  };
  spec.secret_fields = {"secret"};
  return spec;
}

}  // namespace takt::events
