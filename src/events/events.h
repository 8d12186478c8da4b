// File: events/events.h
//
// Events, rules and targets. A change that others react to appends a
// CloudEvents-shaped event to the durable outbox *in the same transaction* as
// the change itself; the bus delivers outbox events to the targets of matching
// rules, at least once, and records each (event, rule) delivery so that a
// redelivery after a crash does not start the same work twice.
//
// Thread-safety: EventBus is safe to share; deliveries run on its own thread
// (Start) or on the caller's (DeliverPending).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
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
  std::string name;
  std::string event_type;  // exact match (patterns come with the release issue)
  std::string target;      // a registered target kind, e.g. "deploy"
  std::string target_config_json = "{}";
  bool enabled = true;
};

// A target does the work for one (event, rule). It must be idempotent on
// event.id: it may be called again for the same event after a crash.
using Target = std::function<Status(const Event& event, const Rule& rule)>;

class EventBus {
 public:
  explicit EventBus(store::Database* db) : db_(db) {}
  ~EventBus();

  Status Migrate();  // also seeds the default rule deploy-approved-to-dev

  void RegisterTarget(const std::string& kind, Target target);
  Status PutRule(const Rule& rule);
  Result<std::vector<Rule>> Rules() const;
  Result<std::vector<Event>> List(int limit) const;

  // Delivers every undelivered event, oldest first. A target error is
  // recorded on the delivery and retried on the next pass (up to 5 tries).
  Status DeliverPending();

  // Background delivery: polls the outbox every `interval` and on Notify().
  void Start(std::chrono::milliseconds interval = std::chrono::milliseconds(200));
  void Notify();
  void Stop();

 private:
  store::Database* db_;
  std::map<std::string, Target> targets_;
  std::mutex mu_;  // guards wake_ and serialises DeliverPending
  std::mutex deliver_mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace takt::events
