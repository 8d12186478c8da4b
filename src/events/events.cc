#include "events/events.h"

#include <spdlog/spdlog.h>

#include "core/time.h"

namespace takt::events {

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
        "'{\"stage\":\"dev\"}', 1);"}}));
  return Ok();
}

void EventBus::RegisterTarget(const std::string& kind, Target target) {
  std::lock_guard<std::mutex> lock(deliver_mu_);
  targets_[kind] = std::move(target);
}

Status EventBus::PutRule(const Rule& r) {
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec("DELETE FROM rules WHERE name = ?", {r.name}));
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO rules VALUES (?, ?, ?, ?, ?)",
                                 {r.name, r.event_type, r.target, r.target_config_json, int64_t{r.enabled}}));
    return Ok();
  }));
  return Ok();
}

Result<std::vector<Rule>> EventBus::Rules() const {
  TAKT_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("SELECT name, event_type, target, target_config, enabled FROM rules ORDER BY name"));
  std::vector<Rule> out;
  for (const auto& r : rows) out.push_back({r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Int(4) != 0});
  return out;
}

Result<std::vector<Event>> EventBus::List(int limit) const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT id, type, source, subject, time, data_json, seq, delivered_at "
                                   "FROM outbox ORDER BY seq DESC LIMIT ?",
                                   {int64_t{limit}}));
  std::vector<Event> out;
  for (const auto& r : rows) {
    out.push_back({r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5), r.Int(6), r.Text(7)});
  }
  return out;
}

Status EventBus::DeliverPending() {
  std::lock_guard<std::mutex> lock(deliver_mu_);
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT id, type, source, subject, time, data_json, seq FROM outbox "
                                   "WHERE delivered_at IS NULL ORDER BY seq LIMIT 100"));
  if (rows.empty()) return Ok();
  TAKT_ASSIGN_OR_RETURN(auto rules, Rules());
  constexpr int kMaxAttempts = 5;
  for (const auto& r : rows) {
    Event e{r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5), r.Int(6), ""};
    bool all_done = true;
    for (const auto& rule : rules) {
      if (!rule.enabled || rule.event_type != e.type) continue;
      TAKT_ASSIGN_OR_RETURN(
          auto d, db_->Query("SELECT status, attempts FROM deliveries WHERE event_id = ? AND rule = ?",
                             {e.id, rule.name}));
      int attempts = d.empty() ? 0 : static_cast<int>(d.front().Int(1));
      if (!d.empty() && (d.front().Text(0) == "delivered" || d.front().Text(0) == "dead")) continue;
      auto it = targets_.find(rule.target);
      Status s = it == targets_.end() ? Status(FailedPrecondition("no target of kind " + rule.target))
                                      : it->second(e, rule);
      ++attempts;
      std::string status = s ? "delivered" : (attempts >= kMaxAttempts ? "dead" : "failed");
      if (!s) {
        spdlog::warn("event {} rule {}: target {} failed (attempt {}): {}", e.id, rule.name, rule.target,
                     attempts, s.error().ToString());
        if (status == "failed") all_done = false;
      }
      TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
        TAKT_RETURN_IF_ERROR(
            tx.Exec("DELETE FROM deliveries WHERE event_id = ? AND rule = ?", {e.id, rule.name}));
        TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
                                     {e.id, rule.name, status, int64_t{attempts},
                                      s ? std::string() : s.error().ToString(), NowIso()}));
        return Ok();
      }));
    }
    if (all_done) {
      TAKT_RETURN_IF_ERROR(db_->Exec("UPDATE outbox SET delivered_at = ? WHERE id = ?", {NowIso(), e.id}));
    }
  }
  return Ok();
}

void EventBus::Start(std::chrono::milliseconds interval) {
  stop_ = false;
  thread_ = std::thread([this, interval] {
    while (!stop_) {
      Status s = DeliverPending();
      if (!s) spdlog::error("event delivery: {}", s.error().ToString());
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, interval, [this] { return wake_ || stop_.load(); });
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
}

}  // namespace takt::events
