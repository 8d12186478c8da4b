// File: registry/import.h
//
// Importing a model trained elsewhere (a notebook, another platform) into the
// registry: `takt model register --file model.json`. The file is untrusted: it
// is checked by loading it (ml::XgbModel::Load), its feature count must agree
// with the schema, and its own feature names (XGBoost JSON/UBJSON
// `learner.feature_names`) are used when no schema is given, or must agree
// with the one given. Every check runs before anything is stored; the model
// bytes are stored unchanged (the `put_blob` callback) only once all pass.
//
// Thread-safe: pure functions over their arguments, plus the registry's own
// transaction.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "registry/registry.h"

namespace takt::registry {

struct ImportRequest {
  std::string group;
  std::string project;      // owner of a new group; must match an existing group's
  std::string framework;    // only "xgboost"
  std::string model_bytes;  // XGBoost JSON or UBJSON, detected by content
  // The input: a JSON array of {"name", "type"}, or the names alone (all
  // float), or neither (then the model file's own feature names).
  std::string schema_json;
  std::vector<std::string> feature_names;
  std::string metrics_json;  // "" or a JSON object of numbers
  std::string params_json;   // "" or a JSON object
  std::string card_json;     // "" or a model card (registry.h)
  // Sample rows: CSV text with a header naming the features (any order), or a
  // JSON array of rows in feature order (null = missing). At most kMaxSampleRows.
  std::string sample_csv;
  std::string sample_json;
  std::string description;  // the group's description, set when given
  std::string principal;    // the importer: created_by and registered_by
};

// Checks everything and returns the version to register (blob_id empty).
// InvalidArgument naming the first problem; nothing is stored.
Result<ModelVersion> PrepareImport(const ImportRequest& req);

// PrepareImport, then put_blob(model bytes) for the blob id, then one
// transaction: the version (source import, no lineage), the group's
// description if given.
using PutBlob = std::function<Result<std::string>(std::string_view)>;
Result<ModelVersion> Import(RegistryService& registry, store::Database& db, const ImportRequest& req,
                            const PutBlob& put_blob);

}  // namespace takt::registry
