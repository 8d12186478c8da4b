// File: events/events.h
//
// Events, rules and targets. A change that others react to appends a
// CloudEvents-shaped event to the durable outbox *in the same transaction* as
// the change itself; the bus delivers outbox events to the targets of the
// rules whose pattern (events/pattern.h) matches the event's envelope.
//
// Delivery is at least once, per (event, rule). When the bus first sees an
// event it routes it: one `deliveries` row per matching enabled rule, status
// "pending" (an event no rule matches is delivered at once). Each attempt
// calls the rule's target; an error schedules the next attempt with
// exponential backoff (base, doubling, capped, minus up to `jitter` of it) as
// status "failed"; after `max_attempts` tries, or at once for an error the
// target calls permanent, the delivery is "dead" (the dead-letter list).
// The outbox marks an event delivered when each of its deliveries is
// "delivered" or "dead". Only deliveries that are due are fetched, so a
// backlog of waiting retries never holds up a newer event. Replay() puts a
// dead (or delivered) delivery back to "pending", due now.
//
// Targets must be idempotent on event.id: a crash between a target's success
// and its record, or a replay, calls the target again for the same event.
//
// Rule configs may hold secrets (a webhook's signing key): the target kind
// names those fields, the bus seals them with the keyring at PutRule
// (AES-256-GCM under a key derived for rule secrets, bound to rule and field)
// and Rules() shows them as "set". Only the target sees the plaintext.
//
// Thread-safety: EventBus is safe to share; deliveries run on its own thread
// (Start) or on the caller's (DeliverPending), one pass at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/result.h"
#include "core/time.h"
#include "crypto/keyring.h"
#include "store/database.h"

namespace takt::events {

struct Event {
  std::string id;       // "ev-..."; filled by Append when empty
  std::string type;     // "io.takt.model.version.approved"
  std::string source;   // "/registry"
  std::string subject;  // "models/weld-pm/versions/1"
  std::string time;     // filled by Append when empty
  std::string data_json = "{}";
  int64_t seq = 0;  // outbox order
  std::string delivered_at;
};

inline constexpr const char* kModelVersionApproved = "io.takt.model.version.approved";
inline constexpr const char* kModelVersionRejected = "io.takt.model.version.rejected";
inline constexpr const char* kModelVersionRegistered = "io.takt.model.version.registered";

// Appends to the outbox using the caller's transaction.
Result<Event> Append(store::Database& tx, Event event);

struct Rule {
  std::string name;  // 1-64 of a-z 0-9 - _ . , starting with a letter or digit
  // Shorthand kept for older callers: when pattern_json is empty, PutRule
  // uses {"type": [event_type]}. Rules() fills it when the pattern is exactly
  // that form, else leaves it empty.
  std::string event_type;
  std::string target;  // a registered target kind, e.g. "deploy", "run", "webhook"
  std::string target_config_json = "{}";
  bool enabled = true;
  std::string pattern_json;  // an EventBridge-style pattern (events/pattern.h)
  std::string description;
  std::string created_by;  // set by PutRule's caller on create; kept on replace
  std::string created_at;
  std::string updated_by;
  std::string updated_at;
};

// A target does the work for one (event, rule). It must be idempotent on
// event.id: it may be called again for the same event (crash, replay). Every
// error it returns is retried with backoff.
using Target = std::function<Status(const Event& event, const Rule& rule)>;

// A failed attempt: why, and whether trying again could help (a webhook's
// 400 cannot; its 503 might).
struct Failure {
  Error error;
  bool permanent = false;
};
using Outcome = std::expected<void, Failure>;

// A target kind with more to say than Target: it sees the attempt number
// (1, 2, ...), tells permanent failures apart, checks rule configs when a rule
// is put, and names the config fields that are secrets.
struct TargetSpec {
  // Required; a kind registered without it fails every delivery like an unknown one.
  std::function<Outcome(const Event& event, const Rule& rule, int attempt)> deliver;
  // Runs in PutRule with the rule as it will be stored (secrets in clear):
  // InvalidArgument naming the config field, else the rule is refused.
  std::function<Status(const Rule& rule)> check;
  // Top-level string fields of target_config_json sealed at rest and shown
  // as "set". A PutRule that leaves one out keeps the stored value.
  std::vector<std::string> secret_fields;
};

struct EventBusOptions {
  // First retry after this; each later one waits twice as long, up to max_backoff.
  std::chrono::milliseconds base_backoff{1000};
  std::chrono::milliseconds max_backoff{std::chrono::minutes(5)};
  // Each delay is shortened by a random part of up to this fraction, so
  // deliveries that failed together do not retry in lockstep.
  double jitter = 0.1;
  int max_attempts = 8;  // then the delivery is dead
  // Events routed, and due deliveries attempted, per batch of a pass.
  int batch_size = 100;
  const Clock* clock = nullptr;              // nullptr: the real one
  const crypto::Keyring* keyring = nullptr;  // seals rule secrets; nullptr: rules with secrets are refused
};

// The wait before attempt `failed_attempts` + 1, after that many failures
// (>= 1): min(base * 2^(failed_attempts-1), max) * (1 - jitter * u), u in [0, 1).
std::chrono::milliseconds BackoffDelay(const EventBusOptions& options, int failed_attempts, double u);

inline constexpr const char* kDeliveryPending = "pending";  // due at next_attempt_at, never tried or replayed
inline constexpr const char* kDeliveryFailed = "failed";    // tried, retried at next_attempt_at
inline constexpr const char* kDeliveryDelivered = "delivered";  // the target succeeded
inline constexpr const char* kDeliveryDead = "dead";            // given up: max attempts or a permanent error

struct Delivery {
  std::string event_id;
  std::string rule;
  std::string status;  // one of the kDelivery* above
  int attempts = 0;
  std::string last_error;
  int64_t next_attempt_at = 0;  // epoch millis; meaningful while pending or failed
  std::string updated_at;
  std::string event_type;  // of the event, for listings
  std::string event_subject;
};

struct DeliveryFilter {
  std::string status;  // "" = any, else one of pending, failed, delivered, dead
  std::string rule;
  std::string event_id;
  int limit = 100;
};

struct EventFilter {
  std::string type;     // exact
  std::string subject;  // exact, or a prefix when it ends in '*' ("models/weld-pm/*")
  int limit = 100;
};

class EventBus {
 public:
  explicit EventBus(store::Database* db, EventBusOptions options = {});
  ~EventBus();

  // Migration v1: outbox, rules, deliveries (seeded deploy-approved-to-dev).
  // v2: rules hold patterns (old ones become {"type": [event_type]}),
  // description and authorship; deliveries get next_attempt_at; the seeded
  // rule is replaced by release-on-decision ({"type": [approved, rejected]} →
  // target release).
  Status Migrate();

  void RegisterTarget(const std::string& kind, Target target);
  void RegisterTarget(const std::string& kind, TargetSpec spec);
  std::vector<std::string> TargetKinds() const;

  // Creates or replaces a rule. InvalidArgument for a bad name, a pattern
  // that does not parse (naming its path), an unknown target kind (listing the
  // known ones) or a config the target refuses; FailedPrecondition for a
  // secret without a keyring. Nothing is written on error. Returns the rule
  // as Rules() shows it.
  Result<Rule> PutRule(const Rule& rule);
  // NotFound if absent. Its waiting deliveries become dead ("rule deleted").
  Status DeleteRule(std::string_view name);
  // By name; secrets shown as "set".
  Result<std::vector<Rule>> Rules() const;

  Result<std::vector<Event>> List(int limit) const;
  Result<std::vector<Event>> List(const EventFilter& filter) const;
  Result<Event> GetEvent(std::string_view id) const;  // NotFound
  // Newest change first. InvalidArgument for an unknown status.
  Result<std::vector<Delivery>> Deliveries(const DeliveryFilter& filter) const;

  // Puts deliveries of an event back to pending, due now, with a fresh count
  // of attempts, and clears the event's delivered_at. With `rule`: that
  // delivery if dead or delivered (FailedPrecondition while it still waits),
  // or a new one if the rule matches the event but never had it. Without:
  // every dead delivery of the event (FailedPrecondition if none). NotFound
  // for an unknown event or rule. Returns the deliveries replayed.
  Result<std::vector<Delivery>> Replay(std::string_view event_id, std::string_view rule = {});

  // Routes new events and attempts every due delivery, oldest first, in
  // batches until nothing due is left. Target errors are recorded on their
  // delivery, not returned.
  Status DeliverPending();

  // Background delivery: polls the outbox every `interval` (sooner when a
  // retry falls due) and on Notify().
  void Start(std::chrono::milliseconds interval = std::chrono::milliseconds(200));
  void Notify();
  void Stop();

  const EventBusOptions& options() const { return options_; }

 private:
  struct Kind {
    std::function<Outcome(const Event&, const Rule&, int)> deliver;
    std::function<Status(const Rule&)> check;
    std::vector<std::string> secret_fields;
  };

  Result<std::vector<Rule>> LoadRules(bool reveal) const;
  Result<int> RouteBatch();
  Result<int> DeliverBatch();
  // Epoch millis of the earliest waiting delivery of an enabled rule, 0 if none.
  Result<int64_t> NextDue() const;
  int64_t NowMillis() const { return clock_->NowMillis(); }

  store::Database* db_;
  EventBusOptions options_;
  const Clock* clock_;

  mutable std::mutex targets_mu_;  // guards targets_
  std::map<std::string, Kind> targets_;

  std::mutex deliver_mu_;  // serialises delivery passes; guards rng_
  std::mt19937_64 rng_;

  std::mutex mu_;  // guards wake_
  std::condition_variable cv_;
  bool wake_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace takt::events
