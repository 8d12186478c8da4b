// File: lineage/lineage.h
//
// Lineage: the graph of what was made from what. Nodes are named
// "<kind>:<id>": dataset:weld-telemetry@3, run:r-1a2b…, artifact:<blob id>,
// model:weld-pm@2, endpoint:weld-pm-dev. Edges point downstream (from the
// input to what was made of it) and are recorded by the module that makes the
// thing, inside its own transaction: a run records what it read and wrote, the
// register step the model version, a deploy the endpoint. Walk follows edges
// up (what is behind X), down (what was made of X) or both.
//
// Thread-safe: free functions over a Database.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "store/database.h"

namespace takt::lineage {

struct Edge {
  std::string from;      // "dataset:weld-telemetry@3"
  std::string to;        // "run:r-…"
  std::string relation;  // "read by", "wrote", "registered as", "deployed to"
  std::string label;     // e.g. the step and output: "features/latest"
  std::string time;
};

Status Migrate(store::Database& db);

// Records an edge (again: a no-op). Call inside the caller's transaction.
Status Record(store::Database& db, Edge edge);

enum class Direction { kUp, kDown, kBoth };

struct Graph {
  std::string start;
  std::vector<Edge> edges;  // in walk order, each once
};

// Follows edges from `start` up to `max_depth` hops. A start that names a
// dataset without a version (dataset:weld-telemetry) begins at all its
// versions; model:weld-pm at all versions of the group.
Result<Graph> Walk(store::Database& db, const std::string& start, Direction direction, int max_depth = 10);

// "weld-telemetry@3" → "dataset:weld-telemetry@3"; a name with a kind prefix
// is kept. InvalidArgument for an unknown kind.
Result<std::string> NormalizeNode(std::string_view ref);

}  // namespace takt::lineage
