// File: catalog/internal.h
//
// Shared by the catalog's .cc files only: row mapping and small helpers.
#pragma once

#include <string>
#include <vector>

#include "catalog/catalog.h"

namespace takt::catalog::internal {

extern const char* const kVersionColumns;
Result<DatasetVersion> VersionFromRow(const store::Row& row);
Status WriteTags(store::Database& tx, const std::string& dataset, const std::vector<ColumnTag>& tags,
                 bool remove);

// A partition's record: its segments and mergeable statistics.
struct Partition {
  std::string key;
  int64_t rows = 0;
  std::string source_hash;  // of the file it came from (directory sources), else ""
  std::string stats_blob;   // serialized frame::StatsBuilder
  std::vector<Segment> segments;
};
Result<std::vector<Partition>> PartitionsOf(store::Database& db, const std::string& dataset, int version);

}  // namespace takt::catalog::internal
