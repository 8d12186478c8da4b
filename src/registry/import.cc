#include "registry/import.h"

#include <cmath>

#include "core/json.h"
#include "frame/csv.h"
#include "ml/xgboost_model.h"

namespace takt::registry {
namespace {

// What the model file itself says about its input.
struct ModelFacts {
  std::string format;  // "json" or "ubj"
  size_t num_features = 0;
  std::vector<Feature> features;  // empty when the file names none
};

// XGBoost's feature type codes: "float", "int", "i" (indicator), "q" (quantitative), "c" (categorical).
std::string SchemaType(const std::string& xgb_type) {
  if (xgb_type == "int") return "int";
  if (xgb_type == "i") return "bool";
  if (xgb_type == "c") return "category";
  return "float";
}

Result<ModelFacts> InspectModel(const std::string& bytes) {
  if (bytes.empty()) return InvalidArgument("model file is empty");
  // Loading is the check: XgbModel::Load parses (depth-limited) and checks the
  // structure before XGBoost sees it. Only a model that loads is parsed again
  // here, for its feature names.
  auto model = ml::XgbModel::Load(bytes);
  if (!model) return std::unexpected(model.error().WithContext("model file"));
  ModelFacts facts;
  facts.num_features = (*model)->num_features();
  Json j = Json::parse(bytes, nullptr, false);
  facts.format = "json";
  if (j.is_discarded()) {
    j = Json::from_ubjson(bytes, true, false);
    facts.format = "ubj";
  }
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument(
        "model file: XGBoost's legacy binary format is not accepted; save the model as JSON or UBJSON "
        "(booster.save_model(\"model.json\") or \"model.ubj\")");
  }
  const Json* learner = j.contains("learner") && j["learner"].is_object() ? &j["learner"] : nullptr;
  if (learner && learner->contains("feature_names") && (*learner)["feature_names"].is_array()) {
    const Json& names = (*learner)["feature_names"];
    const Json types = learner->value("feature_types", Json::array());
    for (size_t i = 0; i < names.size(); ++i) {
      if (!names[i].is_string()) return InvalidArgument("model file: feature_names holds a non-string");
      Feature f{names[i].get<std::string>(), "float"};
      if (types.is_array() && i < types.size() && types[i].is_string()) f.type = SchemaType(types[i]);
      facts.features.push_back(std::move(f));
    }
  }
  return facts;
}

Result<std::vector<Feature>> ParseSchema(const std::string& text) {
  auto j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) return InvalidArgument("schema is not JSON");
  if (j.is_object() && j.contains("features")) j = j["features"];  // {"features": [...]} is fine too
  if (!j.is_array()) return InvalidArgument("schema: expected a JSON array of {\"name\", \"type\"}");
  std::vector<Feature> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& f = j[i];
    const std::string where = "schema: feature " + std::to_string(i + 1);
    if (f.is_string()) {
      out.push_back({f.get<std::string>(), "float"});
      continue;
    }
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string()) {
      return InvalidArgument(where + ": expected {\"name\": string, \"type\": float|int|bool|category}");
    }
    if (f.contains("type") && !f["type"].is_string())
      return InvalidArgument(where + ": type must be a string");
    for (const auto& [k, _] : f.items()) {
      if (k != "name" && k != "type") return InvalidArgument(where + ": unknown field '" + k + "'");
    }
    out.push_back({f["name"].get<std::string>(), f.value("type", "float")});
  }
  return out;
}

Status CheckMetrics(const std::string& text) {
  auto j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument("metrics: expected a JSON object of numbers, e.g. {\"auc\": 0.93}");
  }
  for (const auto& [k, v] : j.items()) {
    if (!v.is_number() || !std::isfinite(v.get<double>())) {
      return InvalidArgument("metrics: '" + k + "' is " + (v.is_string() ? "a string" : v.dump()) +
                             ", not a number");
    }
  }
  return Ok();
}

frame::Type FrameType(const std::string& type) {
  if (type == "int") return frame::Type::kInt64;
  if (type == "bool") return frame::Type::kBool;
  return frame::Type::kFloat64;
}

Result<std::vector<std::vector<double>>> SampleFromCsv(const std::string& csv,
                                                       const std::vector<Feature>& schema) {
  frame::Schema s;
  for (const auto& f : schema)
    s.fields.push_back({.name = f.name, .type = FrameType(f.type), .nullable = true});
  auto table = frame::ReadCsvWithSchema(csv, s, {.max_rows = kMaxSampleRows + 1});
  if (!table) return std::unexpected(table.error().WithContext("sample"));
  if (table->num_rows() > kMaxSampleRows) {
    return InvalidArgument("sample: more than " + std::to_string(kMaxSampleRows) + " rows; keep the first " +
                           std::to_string(kMaxSampleRows));
  }
  std::vector<std::vector<double>> rows(table->num_rows());
  for (size_t r = 0; r < table->num_rows(); ++r) {
    for (const auto& c : table->columns) rows[r].push_back(c.AsDouble(r));
  }
  return rows;
}

Result<std::vector<std::vector<double>>> SampleFromJson(const std::string& text, size_t features) {
  auto j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    return InvalidArgument("sample: expected a JSON array of rows (arrays of numbers or null)");
  }
  std::vector<std::vector<double>> rows;
  for (size_t r = 0; r < j.size(); ++r) {
    if (!j[r].is_array()) return InvalidArgument("sample row " + std::to_string(r + 1) + " is not an array");
    if (j[r].size() != features) {
      return InvalidArgument("sample row " + std::to_string(r + 1) + " has " + std::to_string(j[r].size()) +
                             " values; the schema has " + std::to_string(features) + " features");
    }
    std::vector<double> row;
    for (const auto& v : j[r]) {
      if (v.is_null()) {
        row.push_back(std::nan(""));
      } else if (v.is_number()) {
        row.push_back(v.get<double>());
      } else if (v.is_boolean()) {
        row.push_back(v.get<bool>() ? 1.0 : 0.0);
      } else {
        return InvalidArgument("sample row " + std::to_string(r + 1) + ": " + v.dump() + " is not a number");
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<std::string> Names(const std::vector<Feature>& schema) {
  std::vector<std::string> out;
  for (const auto& f : schema) out.push_back(f.name);
  return out;
}

}  // namespace

Result<ModelVersion> PrepareImport(const ImportRequest& req) {
  const std::string framework = req.framework.empty() ? "xgboost" : req.framework;
  if (framework != "xgboost") {
    return InvalidArgument("framework '" + framework +
                           "' is not supported: only xgboost models can be imported");
  }
  TAKT_ASSIGN_OR_RETURN(ModelFacts facts, InspectModel(req.model_bytes));
  ModelVersion v;
  v.group = req.group;
  v.framework = framework;
  v.artifact_format = facts.format;
  v.source = kSourceImport;
  v.created_by = req.principal;
  v.registered_by = req.principal;
  if (!req.schema_json.empty() && !req.feature_names.empty()) {
    return InvalidArgument("give either a schema or feature names, not both");
  }
  if (!req.schema_json.empty()) {
    TAKT_ASSIGN_OR_RETURN(v.schema, ParseSchema(req.schema_json));
  } else if (!req.feature_names.empty()) {
    for (const auto& n : req.feature_names) v.schema.push_back({n, "float"});
  } else if (!facts.features.empty()) {
    v.schema = facts.features;
  } else {
    return InvalidArgument(
        "the model file names no features: give a schema (--schema schema.json) or "
        "the feature names (--features a,b,c)");
  }
  TAKT_RETURN_IF_ERROR(CheckSchema(v.schema));
  if (v.schema.size() != facts.num_features) {
    return InvalidArgument("the schema has " + std::to_string(v.schema.size()) +
                           " features but the model file "
                           "expects " +
                           std::to_string(facts.num_features));
  }
  if (!facts.features.empty()) {
    for (size_t i = 0; i < v.schema.size() && i < facts.features.size(); ++i) {
      if (v.schema[i].name != facts.features[i].name) {
        return InvalidArgument("feature " + std::to_string(i + 1) + " is '" + v.schema[i].name +
                               "' in the schema but '" + facts.features[i].name + "' in the model file");
      }
    }
  }
  v.feature_names = Names(v.schema);
  if (!req.metrics_json.empty()) {
    TAKT_RETURN_IF_ERROR(CheckMetrics(req.metrics_json));
    v.metrics_json = Json::parse(req.metrics_json).dump();
  }
  if (!req.params_json.empty()) {
    auto p = Json::parse(req.params_json, nullptr, false);
    if (p.is_discarded() || !p.is_object()) return InvalidArgument("params: expected a JSON object");
    v.params_json = p.dump();
  }
  if (!req.card_json.empty()) {
    TAKT_ASSIGN_OR_RETURN(v.card, ParseCard(req.card_json));
  }
  if (!req.sample_csv.empty() && !req.sample_json.empty()) {
    return InvalidArgument("give the sample as CSV or as JSON rows, not both");
  }
  if (!req.sample_csv.empty()) {
    TAKT_ASSIGN_OR_RETURN(v.sample_rows, SampleFromCsv(req.sample_csv, v.schema));
  } else if (!req.sample_json.empty()) {
    TAKT_ASSIGN_OR_RETURN(v.sample_rows, SampleFromJson(req.sample_json, v.schema.size()));
    if (v.sample_rows.size() > kMaxSampleRows) {
      return InvalidArgument("sample has " + std::to_string(v.sample_rows.size()) + " rows; at most " +
                             std::to_string(kMaxSampleRows) + " are kept");
    }
  }
  return v;
}

Result<ModelVersion> Import(RegistryService& registry, store::Database& db, const ImportRequest& req,
                            const PutBlob& put_blob) {
  TAKT_ASSIGN_OR_RETURN(ModelVersion v, PrepareImport(req));
  TAKT_RETURN_IF_ERROR(CheckGroupName(v.group));  // before the blob is put: a bad name leaves nothing
  TAKT_ASSIGN_OR_RETURN(v.blob_id, put_blob(req.model_bytes));
  ModelVersion out;
  TAKT_RETURN_IF_ERROR(db.Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(out, registry.Register(tx, v, req.project));
    if (!req.description.empty()) {
      TAKT_RETURN_IF_ERROR(registry.UpdateGroup(req.group, {.description = req.description}, req.principal));
    }
    return Ok();
  }));
  return out;
}

}  // namespace takt::registry
