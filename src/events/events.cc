// The outbox, rules and the delivery loop: see events.h.
#include "events/events.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/json.h"
#include "core/posix.h"
#include "crypto/crypto.h"
#include "events/pattern.h"

namespace takt::events {
namespace {

constexpr const char* kRuleColumns =
    "name, pattern, target, target_config, enabled, description, created_by, created_at, updated_by, "
    "updated_at";

constexpr const char* kDeliveryColumns =
    "d.event_id, d.rule, d.status, d.attempts, d.last_error, d.next_attempt_at, d.updated_at, o.type, "
    "o.subject";

// Migration v2 (see EventBus::Migrate). A raw string: the SQL quotes JSON.
constexpr const char* kMigrationV2 = R"sql(
CREATE TABLE rules_v2 (name TEXT PRIMARY KEY, pattern TEXT NOT NULL, target TEXT NOT NULL,
  target_config TEXT NOT NULL, enabled INTEGER NOT NULL, description TEXT NOT NULL, created_by TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_by TEXT NOT NULL, updated_at TEXT NOT NULL);
INSERT INTO rules_v2
  SELECT name, '{"type":["' || REPLACE(REPLACE(event_type, '\', '\\'), '"', '\"') || '"]}', target,
         target_config, enabled, '', 'takt', '', 'takt', ''
  FROM rules WHERE name <> 'deploy-approved-to-dev';
DROP TABLE rules;
ALTER TABLE rules_v2 RENAME TO rules;
INSERT INTO rules VALUES ('release-on-decision',
  '{"type":["io.takt.model.version.approved","io.takt.model.version.rejected"]}', 'release', '{}', 1,
  'starts the release of a model version when it is approved or rejected', 'takt', '', 'takt', '');
UPDATE deliveries SET status = 'dead',
  last_error = 'FAILED_PRECONDITION: rule deploy-approved-to-dev was replaced by release-on-decision'
  WHERE rule = 'deploy-approved-to-dev' AND status NOT IN ('delivered', 'dead');
ALTER TABLE deliveries ADD COLUMN next_attempt_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX outbox_undelivered ON outbox (delivered_at, seq)
)sql";

// Marks the event delivered once none of its deliveries waits any more.
Status MarkIfDone(store::Database& tx, const std::string& event_id) {
  TAKT_RETURN_IF_ERROR(
      tx.Exec("UPDATE outbox SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL AND NOT EXISTS "
              "(SELECT 1 FROM deliveries WHERE event_id = ? AND status IN ('pending', 'failed'))",
              {NowIso(), event_id, event_id}));
  return Ok();
}

Event EventFromRow(const store::Row& r, size_t first = 0) {
  return {r.Text(first),     r.Text(first + 1), r.Text(first + 2), r.Text(first + 3),
          r.Text(first + 4), r.Text(first + 5), r.Int(first + 6),  r.Text(first + 7)};
}

Delivery DeliveryFromRow(const store::Row& r) {
  return {r.Text(0), r.Text(1), r.Text(2), static_cast<int>(r.Int(3)), r.Text(4), r.Int(5),
          r.Text(6), r.Text(7), r.Text(8)};
}

// The old event_type shorthand, when the pattern is exactly {"type": ["<one type>"]}; else "".
std::string ShorthandType(const std::string& pattern_json) {
  Json p = Json::parse(pattern_json, nullptr, false);
  if (p.is_object() && p.size() == 1 && p.contains("type") && p["type"].is_array() && p["type"].size() == 1 &&
      p["type"][0].is_string()) {
    return p["type"][0].get<std::string>();
  }
  return "";
}

Rule RuleFromRow(const store::Row& r) {
  Rule rule;
  rule.name = r.Text(0);
  rule.pattern_json = r.Text(1);
  rule.target = r.Text(2);
  rule.target_config_json = r.Text(3);
  rule.enabled = r.Int(4) != 0;
  rule.description = r.Text(5);
  rule.created_by = r.Text(6);
  rule.created_at = r.Text(7);
  rule.updated_by = r.Text(8);
  rule.updated_at = r.Text(9);
  rule.event_type = ShorthandType(rule.pattern_json);
  return rule;
}

Status CheckRuleName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    return InvalidArgument("rule name '" + std::string(name) +
                           "' is invalid: use 1-64 lowercase letters, digits, '-', '_' and '.', starting "
                           "with a letter or digit");
  }
  return Ok();
}

Status CheckStatus(std::string_view status) {
  if (status.empty() || status == kDeliveryPending || status == kDeliveryFailed ||
      status == kDeliveryDelivered || status == kDeliveryDead) {
    return Ok();
  }
  return InvalidArgument("delivery status '" + std::string(status) +
                         "' is not one of pending, failed, delivered, dead");
}

Status CheckLimit(int limit) {
  if (limit < 1 || limit > 1000) {
    return InvalidArgument("limit " + std::to_string(limit) + " is out of range [1, 1000]");
  }
  return Ok();
}

// Secrets at rest: {"<field>": {"$sealed": "<hex of AES-256-GCM>"}} in the
// stored config, bound to the rule and field by the AAD.
constexpr const char* kSealedKey = "$sealed";
constexpr const char* kSecretPurpose = "events:rule-secrets";

bool IsSealed(const Json& v) { return v.is_object() && v.size() == 1 && v.contains(kSealedKey); }

std::string SecretAad(std::string_view rule, std::string_view field) {
  return "rule:" + std::string(rule) + ":" + std::string(field);
}

// The stored config with sealed fields shown as "set".
std::string RedactConfig(const std::string& config_json) {
  Json cfg = Json::parse(config_json, nullptr, false);
  if (!cfg.is_object()) return config_json;
  for (auto& [key, value] : cfg.items()) {
    if (IsSealed(value)) value = "set";
  }
  return cfg.dump();
}

}  // namespace

std::chrono::milliseconds BackoffDelay(const EventBusOptions& o, int failed_attempts, double u) {
  const double base = static_cast<double>(o.base_backoff.count());
  const double cap = static_cast<double>(o.max_backoff.count());
  const int doublings = std::clamp(failed_attempts - 1, 0, 62);
  double delay = std::min(base * std::ldexp(1.0, doublings), cap);
  delay *= 1.0 - std::clamp(o.jitter, 0.0, 1.0) * std::clamp(u, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(delay)));
}

Result<Event> Append(store::Database& tx, Event e) {
  if (e.id.empty()) e.id = NewId("ev");
  if (e.time.empty()) e.time = NowIso();
  TAKT_ASSIGN_OR_RETURN(
      auto rows,
      tx.Query("INSERT INTO outbox (id, type, source, subject, time, data_json) VALUES (?, ?, ?, ?, ?, ?) "
               "RETURNING seq",
               {e.id, e.type, e.source, e.subject, e.time, e.data_json}));
  if (!rows.empty()) e.seq = rows.front().Int(0);
  return e;
}

EventBus::EventBus(store::Database* db, EventBusOptions options)
    : db_(db),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : &RealClock()),
      rng_(std::random_device{}()) {}

EventBus::~EventBus() { Stop(); }

Status EventBus::Migrate() {
  TAKT_RETURN_IF_ERROR(store::Migrate(
      *db_, "events",
      {{1, "outbox-rules-deliveries",
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, source "
        "TEXT NOT "
        "NULL, subject TEXT NOT NULL, time TEXT NOT NULL, data_json TEXT NOT NULL, delivered_at TEXT);"
        "CREATE TABLE rules (name TEXT PRIMARY KEY, event_type TEXT NOT NULL, target TEXT NOT NULL, "
        "target_config "
        "TEXT NOT NULL, enabled INTEGER NOT NULL);"
        "CREATE TABLE deliveries (event_id TEXT NOT NULL, rule TEXT NOT NULL, status TEXT NOT NULL, attempts "
        "INTEGER NOT NULL, last_error TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (event_id, rule));"
        "INSERT INTO rules VALUES ('deploy-approved-to-dev', 'io.takt.model.version.approved', 'deploy', "
        "'{\"stage\":\"dev\"}', 1);"},
       {2, "rule-patterns-backoff-dead-letters", kMigrationV2}}));
  // Rules carried over by v2 (and its seed) were created before anyone recorded when.
  const std::string now = NowIso();
  TAKT_RETURN_IF_ERROR(
      db_->Exec("UPDATE rules SET created_at = ?, updated_at = ? WHERE created_at = ''", {now, now}));
  // Events whose deliveries v2 settled (the replaced rule's) are done.
  TAKT_RETURN_IF_ERROR(
      db_->Exec("UPDATE outbox SET delivered_at = ? WHERE delivered_at IS NULL AND EXISTS (SELECT 1 FROM "
                "deliveries d WHERE d.event_id = outbox.id) AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE "
                "d.event_id = outbox.id AND d.status IN ('pending', 'failed'))",
                {now}));
  return Ok();
}

void EventBus::RegisterTarget(const std::string& kind, Target target) {
  Kind k;
  k.deliver = [target = std::move(target)](const Event& e, const Rule& r, int) -> Outcome {
    Status s = target(e, r);
    if (!s) return std::unexpected(Failure{s.error(), false});
    return {};
  };
  std::lock_guard<std::mutex> lock(targets_mu_);
  targets_[kind] = std::move(k);
}

void EventBus::RegisterTarget(const std::string& kind, TargetSpec spec) {
  Kind k{std::move(spec.deliver), std::move(spec.check), std::move(spec.secret_fields)};
  std::lock_guard<std::mutex> lock(targets_mu_);
  targets_[kind] = std::move(k);
}

std::vector<std::string> EventBus::TargetKinds() const {
  std::lock_guard<std::mutex> lock(targets_mu_);
  std::vector<std::string> out;
  for (const auto& [kind, _] : targets_) out.push_back(kind);
  return out;
}

Result<Rule> EventBus::PutRule(const Rule& in) {
  TAKT_RETURN_IF_ERROR(CheckRuleName(in.name));
  auto fail = [&](const Error& e) { return std::unexpected(e.WithContext("rule " + in.name)); };

  // The pattern, checked whole; errors name its path.
  std::string pattern_text = in.pattern_json;
  if (pattern_text.empty() && !in.event_type.empty()) pattern_text = Json{{"type", {in.event_type}}}.dump();
  if (pattern_text.empty()) {
    return fail(Error(Code::kInvalidArgument,
                      "a pattern is required, e.g. {\"type\": [\"io.takt.model.version.approved\"]}"));
  }
  auto pattern = Pattern::ParseText(pattern_text);
  if (!pattern) return fail(pattern.error());

  Kind kind;
  {
    std::lock_guard<std::mutex> lock(targets_mu_);
    auto it = targets_.find(in.target);
    if (it == targets_.end()) {
      std::string known;
      for (const auto& [k, _] : targets_) known += (known.empty() ? "" : ", ") + k;
      return fail(Error(Code::kInvalidArgument, "unknown target kind '" + in.target + "' (known: " +
                                                    (known.empty() ? "none registered" : known) + ")"));
    }
    kind = it->second;
  }

  Json config = Json::parse(in.target_config_json.empty() ? "{}" : in.target_config_json, nullptr, false);
  if (!config.is_object()) return fail(Error(Code::kInvalidArgument, "config must be a JSON object"));

  // Secrets left out of a replace keep their stored value (a listing shows "set", not the secret).
  TAKT_ASSIGN_OR_RETURN(
      auto existing,
      db_->Query(std::string("SELECT ") + kRuleColumns + " FROM rules WHERE name = ?", {in.name}));
  if (!existing.empty() && existing.front().Text(2) == in.target && !kind.secret_fields.empty()) {
    Json old = Json::parse(existing.front().Text(3), nullptr, false);
    for (const auto& field : kind.secret_fields) {
      if (config.contains(field) || !old.is_object() || !old.contains(field) || !IsSealed(old[field]))
        continue;
      if (options_.keyring == nullptr) continue;
      auto sealed = crypto::HexDecode(old[field][kSealedKey].get<std::string>());
      if (!sealed) return fail(sealed.error());
      auto plain =
          crypto::Open(options_.keyring->DeriveKey(kSecretPurpose), *sealed, SecretAad(in.name, field));
      if (!plain) return fail(plain.error().WithContext("the stored config." + field));
      config[field] = std::move(*plain);
    }
  }

  Rule rule = in;
  rule.pattern_json = pattern->json().dump();
  rule.target_config_json = config.dump();
  if (kind.check) {
    if (auto s = kind.check(rule); !s) return fail(s.error());
  }

  // Seal the secrets.
  for (const auto& field : kind.secret_fields) {
    if (!config.contains(field)) continue;
    if (!config[field].is_string()) {
      return fail(Error(Code::kInvalidArgument, "config." + field + " must be a string"));
    }
    if (options_.keyring == nullptr) {
      return fail(Error(Code::kFailedPrecondition,
                        "config." + field + " is a secret and this event bus has no keyring to seal it"));
    }
    auto sealed = crypto::Seal(options_.keyring->DeriveKey(kSecretPurpose), config[field].get<std::string>(),
                               SecretAad(in.name, field));
    if (!sealed) return fail(sealed.error());
    config[field] = Json{{kSealedKey, crypto::HexEncode(*sealed)}};
  }

  const std::string now = FormatIsoMillis(NowMillis());
  Rule stored = rule;
  stored.target_config_json = config.dump();
  stored.created_at = now;
  stored.updated_by = in.created_by;
  stored.updated_at = now;
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(auto prev,
                          tx.Query("SELECT created_by, created_at FROM rules WHERE name = ?", {in.name}));
    if (!prev.empty()) {
      stored.created_by = prev.front().Text(0);
      stored.created_at = prev.front().Text(1);
    }
    TAKT_RETURN_IF_ERROR(tx.Exec("DELETE FROM rules WHERE name = ?", {stored.name}));
    TAKT_RETURN_IF_ERROR(tx.Exec(
        std::string("INSERT INTO rules (") + kRuleColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {stored.name, stored.pattern_json, stored.target, stored.target_config_json, int64_t{stored.enabled},
         stored.description, stored.created_by, stored.created_at, stored.updated_by, stored.updated_at}));
    return Ok();
  }));
  stored.target_config_json = RedactConfig(stored.target_config_json);
  stored.event_type = ShorthandType(stored.pattern_json);
  return stored;
}

Status EventBus::DeleteRule(std::string_view name) {
  const std::string n(name);
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(int64_t removed, tx.Exec("DELETE FROM rules WHERE name = ?", {n}));
    if (removed == 0) return NotFound("rule " + n + " does not exist");
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE deliveries SET status = 'dead', last_error = ?, updated_at = ? WHERE rule = ? AND "
                "status IN ('pending', 'failed')",
                {std::string("FAILED_PRECONDITION: rule " + n + " was deleted"), NowIso(), n}));
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE outbox SET delivered_at = ? WHERE delivered_at IS NULL AND EXISTS (SELECT 1 FROM "
                "deliveries d WHERE d.event_id = outbox.id AND d.rule = ?) AND NOT EXISTS (SELECT 1 FROM "
                "deliveries d WHERE d.event_id = outbox.id AND d.status IN ('pending', 'failed'))",
                {NowIso(), n}));
    return Ok();
  }));
  return Ok();
}

Result<std::vector<Rule>> EventBus::LoadRules(bool reveal) const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query(std::string("SELECT ") + kRuleColumns + " FROM rules ORDER BY name"));
  std::vector<Rule> out;
  for (const auto& r : rows) {
    Rule rule = RuleFromRow(r);
    if (!reveal) {
      rule.target_config_json = RedactConfig(rule.target_config_json);
    } else {
      Json cfg = Json::parse(rule.target_config_json, nullptr, false);
      if (cfg.is_object()) {
        bool changed = false;
        for (auto& [key, value] : cfg.items()) {
          if (!IsSealed(value)) continue;
          if (options_.keyring == nullptr) {
            return FailedPrecondition("rule " + rule.name + ": config." + key +
                                      " is sealed and this event bus has no keyring");
          }
          TAKT_ASSIGN_OR_RETURN(std::string sealed, crypto::HexDecode(value[kSealedKey].get<std::string>()));
          auto plain =
              crypto::Open(options_.keyring->DeriveKey(kSecretPurpose), sealed, SecretAad(rule.name, key));
          if (!plain)
            return std::unexpected(plain.error().WithContext("rule " + rule.name + ": config." + key));
          value = std::move(*plain);
          changed = true;
        }
        if (changed) rule.target_config_json = cfg.dump();
      }
    }
    out.push_back(std::move(rule));
  }
  return out;
}

Result<std::vector<Rule>> EventBus::Rules() const { return LoadRules(false); }

Result<std::vector<Event>> EventBus::List(int limit) const { return List(EventFilter{.limit = limit}); }

Result<std::vector<Event>> EventBus::List(const EventFilter& f) const {
  TAKT_RETURN_IF_ERROR(CheckLimit(f.limit));
  std::string sql =
      "SELECT id, type, source, subject, time, data_json, seq, delivered_at FROM outbox WHERE 1 = 1";
  std::vector<store::Value> params;
  if (!f.type.empty()) {
    sql += " AND type = ?";
    params.push_back(f.type);
  }
  if (!f.subject.empty()) {
    if (f.subject.ends_with('*')) {
      const std::string prefix = f.subject.substr(0, f.subject.size() - 1);
      sql += " AND substr(subject, 1, ?) = ?";
      params.push_back(static_cast<int64_t>(prefix.size()));
      params.push_back(prefix);
    } else {
      sql += " AND subject = ?";
      params.push_back(f.subject);
    }
  }
  sql += " ORDER BY seq DESC LIMIT ?";
  params.push_back(int64_t{f.limit});
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<Event> out;
  for (const auto& r : rows) out.push_back(EventFromRow(r));
  return out;
}

Result<Event> EventBus::GetEvent(std::string_view id) const {
  TAKT_ASSIGN_OR_RETURN(
      auto row,
      db_->QueryOne("SELECT id, type, source, subject, time, data_json, seq, delivered_at FROM outbox "
                    "WHERE id = ?",
                    {std::string(id)}, "event " + std::string(id) + " does not exist"));
  return EventFromRow(row);
}

Result<std::vector<Delivery>> EventBus::Deliveries(const DeliveryFilter& f) const {
  TAKT_RETURN_IF_ERROR(CheckStatus(f.status));
  TAKT_RETURN_IF_ERROR(CheckLimit(f.limit));
  std::string sql = std::string("SELECT ") + kDeliveryColumns +
                    " FROM deliveries d JOIN outbox o ON o.id = d.event_id WHERE 1 = 1";
  std::vector<store::Value> params;
  for (const auto& [column, value] : {std::pair{"d.status", &f.status}, std::pair{"d.rule", &f.rule},
                                      std::pair{"d.event_id", &f.event_id}}) {
    if (value->empty()) continue;
    sql += std::string(" AND ") + column + " = ?";
    params.push_back(*value);
  }
  sql += " ORDER BY d.updated_at DESC, o.seq DESC, d.rule LIMIT ?";
  params.push_back(int64_t{f.limit});
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<Delivery> out;
  for (const auto& r : rows) out.push_back(DeliveryFromRow(r));
  return out;
}

Result<std::vector<Delivery>> EventBus::Replay(std::string_view event_id, std::string_view rule_name) {
  const std::string id(event_id);
  const std::string rule(rule_name);
  const int64_t now_ms = NowMillis();
  const std::string now = FormatIsoMillis(now_ms);
  std::vector<std::string> replayed;
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(
        auto ev,
        tx.QueryOne("SELECT id, type, source, subject, time, data_json, seq, delivered_at FROM outbox "
                    "WHERE id = ?",
                    {id}, "event " + id + " does not exist"));
    const Event event = EventFromRow(ev);
    constexpr const char* kReset =
        "UPDATE deliveries SET status = 'pending', attempts = 0, last_error = '', next_attempt_at = ?, "
        "updated_at = ? WHERE event_id = ? AND rule = ?";
    if (!rule.empty()) {
      TAKT_ASSIGN_OR_RETURN(auto r, tx.Query("SELECT pattern, enabled FROM rules WHERE name = ?", {rule}));
      if (r.empty()) return NotFound("rule " + rule + " does not exist");
      if (r.front().Int(1) == 0) {
        return FailedPrecondition("rule " + rule + " is disabled: enable it before replaying to it");
      }
      TAKT_ASSIGN_OR_RETURN(auto d, tx.Query("SELECT status, attempts, next_attempt_at FROM deliveries WHERE "
                                             "event_id = ? AND rule = ?",
                                             {id, rule}));
      if (!d.empty()) {
        const std::string status = d.front().Text(0);
        if (status == kDeliveryPending || status == kDeliveryFailed) {
          return FailedPrecondition("the delivery of event " + id + " to rule " + rule + " is still " +
                                    status + " (" + std::to_string(d.front().Int(1)) +
                                    " attempts so far, next at " + FormatIsoMillis(d.front().Int(2)) +
                                    "): there is nothing to replay");
        }
        TAKT_RETURN_IF_ERROR(tx.Exec(kReset, {now_ms, now, id, rule}));
      } else {
        TAKT_ASSIGN_OR_RETURN(Pattern pattern, Pattern::ParseText(r.front().Text(0)));
        if (!pattern.Matches(event)) {
          return FailedPrecondition("rule " + rule + " does not match event " + id + " (type " + event.type +
                                    "): there is nothing to replay");
        }
        TAKT_RETURN_IF_ERROR(
            tx.Exec("INSERT INTO deliveries (event_id, rule, status, attempts, last_error, updated_at, "
                    "next_attempt_at) VALUES (?, ?, 'pending', 0, '', ?, ?)",
                    {id, rule, now, now_ms}));
      }
      replayed.push_back(rule);
    } else {
      TAKT_ASSIGN_OR_RETURN(auto dead,
                            tx.Query("SELECT d.rule FROM deliveries d JOIN rules r ON r.name = d.rule "
                                     "WHERE d.event_id = ? AND d.status = 'dead' AND r.enabled = 1 "
                                     "ORDER BY d.rule",
                                     {id}));
      if (dead.empty()) {
        return FailedPrecondition("event " + id +
                                  " has no dead deliveries to a rule that exists and is enabled; name a rule "
                                  "to deliver it again");
      }
      for (const auto& d : dead) {
        TAKT_RETURN_IF_ERROR(tx.Exec(kReset, {now_ms, now, id, d.Text(0)}));
        replayed.push_back(d.Text(0));
      }
    }
    TAKT_RETURN_IF_ERROR(tx.Exec("UPDATE outbox SET delivered_at = NULL WHERE id = ?", {id}));
    return Ok();
  }));
  std::vector<Delivery> out;
  for (const auto& r : replayed) {
    TAKT_ASSIGN_OR_RETURN(auto d, Deliveries({.rule = r, .event_id = id, .limit = 1}));
    out.insert(out.end(), d.begin(), d.end());
  }
  return out;
}

Result<int> EventBus::RouteBatch() {
  // Undelivered events without a delivery row are new (or lost their rows).
  TAKT_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("SELECT o.id, o.type, o.source, o.subject, o.time, o.data_json, o.seq, o.delivered_at FROM "
                 "outbox o WHERE o.delivered_at IS NULL AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE "
                 "d.event_id = o.id) ORDER BY o.seq LIMIT ?",
                 {int64_t{options_.batch_size}}));
  if (rows.empty()) return 0;
  TAKT_ASSIGN_OR_RETURN(auto rules, LoadRules(false));
  std::vector<std::pair<std::string, Pattern>> patterns;
  for (const auto& rule : rules) {
    if (!rule.enabled) continue;
    auto p = Pattern::ParseText(rule.pattern_json);
    if (!p) {
      // Checked when written, so only a hand-edited row gets here.
      spdlog::error("event rule {}: stored pattern does not parse, it matches nothing: {}", rule.name,
                    p.error().ToString());
      continue;
    }
    patterns.emplace_back(rule.name, std::move(*p));
  }
  const int64_t now_ms = NowMillis();
  const std::string now = FormatIsoMillis(now_ms);
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    for (const auto& r : rows) {
      const Event e = EventFromRow(r);
      const Json envelope = Envelope(e);
      for (const auto& [name, pattern] : patterns) {
        if (!pattern.Matches(envelope)) continue;
        TAKT_RETURN_IF_ERROR(
            tx.Exec("INSERT INTO deliveries (event_id, rule, status, attempts, last_error, updated_at, "
                    "next_attempt_at) VALUES (?, ?, 'pending', 0, '', ?, ?) ON CONFLICT (event_id, rule) DO "
                    "NOTHING",
                    {e.id, name, now, now_ms}));
      }
      TAKT_RETURN_IF_ERROR(MarkIfDone(tx, e.id));
    }
    return Ok();
  }));
  return static_cast<int>(rows.size());
}

Result<int> EventBus::DeliverBatch() {
  TAKT_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query(
          "SELECT d.event_id, d.rule, d.attempts, o.id, o.type, o.source, o.subject, o.time, o.data_json, "
          "o.seq, o.delivered_at FROM deliveries d JOIN outbox o ON o.id = d.event_id JOIN rules r ON "
          "r.name = d.rule WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= ? AND "
          "r.enabled = 1 ORDER BY d.next_attempt_at, o.seq LIMIT ?",
          {NowMillis(), int64_t{options_.batch_size}}));
  if (rows.empty()) return 0;
  // Rules with their secrets, and the targets, as they are for this batch.
  std::map<std::string, Rule> rules;
  Status revealed = Ok();
  if (auto all = LoadRules(true); all) {
    for (auto& r : *all) rules.emplace(r.name, std::move(r));
  } else {
    revealed = std::unexpected(all.error());
  }
  std::map<std::string, Kind> kinds;
  {
    std::lock_guard<std::mutex> lock(targets_mu_);
    kinds = targets_;
  }
  for (const auto& row : rows) {
    if (stop_) break;
    const std::string rule_name = row.Text(1);
    const int attempt = static_cast<int>(row.Int(2)) + 1;
    const Event e = EventFromRow(row, 3);
    Outcome outcome;
    auto rule = rules.find(rule_name);
    if (!revealed) {
      outcome = std::unexpected(Failure{revealed.error(), false});
    } else if (rule == rules.end()) {
      continue;  // deleted since the query: DeleteRule settled its deliveries
    } else if (auto kind = kinds.find(rule->second.target); kind == kinds.end() || !kind->second.deliver) {
      outcome = std::unexpected(
          Failure{Error(Code::kFailedPrecondition, "no target of kind " + rule->second.target), false});
    } else {
      try {
        outcome = kind->second.deliver(e, rule->second, attempt);
      } catch (const std::exception& ex) {
        outcome = std::unexpected(
            Failure{Error(Code::kInternal, std::string("target threw: ") + ex.what()), false});
      }
    }
    std::string status = kDeliveryDelivered;
    std::string error;
    int64_t next = 0;
    const int64_t now_ms = NowMillis();
    if (!outcome) {
      error = outcome.error().error.ToString();
      if (outcome.error().permanent || attempt >= options_.max_attempts) {
        status = kDeliveryDead;
        spdlog::warn("event {} rule {}: delivery is dead after attempt {}: {}", e.id, rule_name, attempt,
                     error);
      } else {
        status = kDeliveryFailed;
        next = now_ms +
               BackoffDelay(options_, attempt, std::uniform_real_distribution<double>(0, 1)(rng_)).count();
        spdlog::warn("event {} rule {}: attempt {} failed, next at {}: {}", e.id, rule_name, attempt,
                     FormatIsoMillis(next), error);
      }
    }
    TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
      TAKT_RETURN_IF_ERROR(
          tx.Exec("UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?, "
                  "updated_at = ? "
                  "WHERE event_id = ? AND rule = ? AND status IN ('pending', 'failed')",
                  {status, int64_t{attempt}, error, next, FormatIsoMillis(now_ms), e.id, rule_name}));
      return MarkIfDone(tx, e.id);
    }));
  }
  return static_cast<int>(rows.size());
}

Result<int64_t> EventBus::NextDue() const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT MIN(d.next_attempt_at) FROM deliveries d JOIN rules r ON r.name = "
                                   "d.rule WHERE d.status IN ('pending', 'failed') AND r.enabled = 1"));
  if (rows.empty() || rows.front().IsNull(0)) return int64_t{0};
  return rows.front().Int(0);
}

Status EventBus::DeliverPending() {
  std::lock_guard<std::mutex> lock(deliver_mu_);
  // Route everything new, then attempt everything due; again until a round finds nothing.
  int work = 1;
  while (work > 0 && !stop_) {
    work = 0;
    while (!stop_) {
      TAKT_ASSIGN_OR_RETURN(int routed, RouteBatch());
      if (routed == 0) break;
      work += routed;
    }
    while (!stop_) {
      TAKT_ASSIGN_OR_RETURN(int attempted, DeliverBatch());
      if (attempted == 0) break;
      work += attempted;
    }
  }
  return Ok();
}

void EventBus::Start(std::chrono::milliseconds interval) {
  stop_ = false;
  thread_ = std::thread([this, interval] {
    SetThreadName("takt-events");
    while (!stop_) {
      Status s = DeliverPending();
      if (!s) spdlog::error("event delivery: {}", s.error().ToString());
      auto wait = interval;
      if (auto due = NextDue(); due && *due > 0) {
        wait =
            std::clamp(std::chrono::milliseconds(*due - NowMillis()), std::chrono::milliseconds(0), interval);
      }
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, wait, [this] { return wake_ || stop_.load(); });
      wake_ = false;
    }
  });
}

void EventBus::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void EventBus::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  stop_ = false;  // DeliverPending on the caller's thread works again
}

}  // namespace takt::events
