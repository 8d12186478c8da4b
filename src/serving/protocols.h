// File: serving/protocols.h
//
// Wire formats for inference requests, independent of HTTP:
//  - Open Inference Protocol v2 (KServe, Triton): POST /v2/models/{m}/infer
//  - SageMaker runtime: POST /endpoints/{name}/invocations, text/csv or
//    application/json ({"instances": [[...], ...]} or a bare [[...], ...]).
// Every parser checks shapes, types and finiteness and names what is wrong.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "ml/xgboost_model.h"

namespace takt::serving {

struct OipRequest {
  std::string id;
  ml::Matrix rows;
};

// Accepts either one input of shape [n, f] (or [f] for one row) holding the
// features in the model's order, or one input per feature, named as the
// feature, of shape [n] or [n, 1]. Datatypes FP32, FP64, INT8..INT64,
// UINT8..UINT64, BOOL; data flat or nested.
Result<OipRequest> ParseOipInfer(std::string_view body, const std::vector<std::string>& feature_names);
std::string RenderOipInfer(const std::string& model, int version, const std::string& id,
                           const std::vector<float>& predictions);
std::string RenderOipMetadata(const std::string& model, int version,
                              const std::vector<std::string>& features);

// SageMaker text/csv: one row per line, features in the model's order, no header.
Result<ml::Matrix> ParseCsvRows(std::string_view body, size_t num_features);
std::string RenderCsvPredictions(const std::vector<float>& predictions);
// SageMaker application/json.
Result<ml::Matrix> ParseJsonInstances(std::string_view body, size_t num_features);
std::string RenderJsonPredictions(const std::vector<float>& predictions);

}  // namespace takt::serving
