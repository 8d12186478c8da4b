#include "lineage/lineage.h"

#include <deque>
#include <set>

#include "core/time.h"

namespace takt::lineage {
namespace {

const std::vector<std::string>& Kinds() {
  static const auto* k = new std::vector<std::string>{"dataset", "run", "artifact", "model", "endpoint"};
  return *k;
}

Edge FromRow(const store::Row& r) { return {r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4)}; }

// Nodes a start names: itself, or every version of a dataset or model group.
Result<std::vector<std::string>> Expand(store::Database& db, const std::string& start) {
  std::vector<std::string> out = {start};
  const bool versionless = (start.rfind("dataset:", 0) == 0 || start.rfind("model:", 0) == 0) &&
                           start.find('@') == std::string::npos;
  if (!versionless) return out;
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db.Query("SELECT from_node FROM lineage_edges WHERE substr(from_node, 1, ?) = ? "
                                 "UNION SELECT to_node FROM lineage_edges WHERE substr(to_node, 1, ?) = "
                                 "? ORDER BY 1",
                                 {static_cast<int64_t>(start.size() + 1), start + "@",
                                  static_cast<int64_t>(start.size() + 1), start + "@"}));
  for (const auto& r : rows) out.push_back(r.Text(0));
  return out;
}

}  // namespace

Status Migrate(store::Database& db) {
  return store::Migrate(
      db, "lineage",
      {{1, "edges",
        "CREATE TABLE lineage_edges (from_node TEXT NOT NULL, to_node TEXT NOT NULL, relation TEXT NOT NULL, "
        "label TEXT NOT NULL, time TEXT NOT NULL, PRIMARY KEY (from_node, to_node, relation, label));"
        "CREATE INDEX lineage_edges_to ON lineage_edges (to_node);"}});
}

Status Record(store::Database& db, Edge e) {
  if (e.time.empty()) e.time = NowIso();
  TAKT_RETURN_IF_ERROR(
      db.Exec("INSERT INTO lineage_edges (from_node, to_node, relation, label, time) VALUES (?, "
              "?, ?, ?, ?) ON CONFLICT DO NOTHING",
              {e.from, e.to, e.relation, e.label, e.time}));
  return Ok();
}

Result<std::string> NormalizeNode(std::string_view ref) {
  if (ref.empty())
    return InvalidArgument("name a resource, e.g. dataset:weld-telemetry@1 or endpoint:weld-pm-dev");
  auto colon = ref.find(':');
  if (colon == std::string_view::npos) return "dataset:" + std::string(ref);
  std::string kind(ref.substr(0, colon));
  for (const auto& k : Kinds()) {
    if (k == kind) {
      if (colon + 1 == ref.size()) return InvalidArgument("'" + std::string(ref) + "' names no " + kind);
      return std::string(ref);
    }
  }
  return InvalidArgument("unknown resource kind '" + kind +
                         "' (known: dataset, run, artifact, model, endpoint)");
}

Result<Graph> Walk(store::Database& db, const std::string& start, Direction direction, int max_depth) {
  Graph g;
  g.start = start;
  TAKT_ASSIGN_OR_RETURN(std::vector<std::string> starts, Expand(db, start));
  std::set<std::string> seen_nodes;
  std::set<std::tuple<std::string, std::string, std::string, std::string>> seen_edges;
  for (int pass = 0; pass < 2; ++pass) {
    const bool down = pass == 0;
    if (down && direction == Direction::kUp) continue;
    if (!down && direction == Direction::kDown) continue;
    std::deque<std::pair<std::string, int>> queue;
    std::set<std::string> visited;
    for (const auto& s : starts) {
      queue.emplace_back(s, 0);
      visited.insert(s);
    }
    while (!queue.empty()) {
      auto [node, depth] = queue.front();
      queue.pop_front();
      if (depth >= max_depth) continue;
      TAKT_ASSIGN_OR_RETURN(
          auto rows,
          db.Query(std::string("SELECT from_node, to_node, relation, label, time FROM lineage_edges WHERE ") +
                       (down ? "from_node" : "to_node") + " = ? ORDER BY time, to_node",
                   {node}));
      for (const auto& r : rows) {
        Edge e = FromRow(r);
        if (seen_edges.insert({e.from, e.to, e.relation, e.label}).second) g.edges.push_back(e);
        const std::string& next = down ? e.to : e.from;
        if (visited.insert(next).second) queue.emplace_back(next, depth + 1);
      }
    }
  }
  return g;
}

}  // namespace takt::lineage
