// File: serving/protocols.h
//
// Wire formats of inference requests and responses, independent of HTTP:
//  - Open Inference Protocol v2 (KServe, Triton REST): POST /v2/models/{m}/infer,
//    JSON, or JSON header + binary tensors (Inference-Header-Content-Length).
//  - SageMaker runtime: POST /endpoints/{name}/invocations, text/csv or
//    application/json ({"instances": [[...], ...]}, {"instances": [{"features":
//    [...]}]}, a bare [[...], ...] or a single row [...]).
//  - MLflow scoring: POST /invocations, application/json with dataframe_split,
//    dataframe_records, instances or inputs.
//
// Every parser fills a row-major float matrix in the model's feature order
// (NaN = missing; JSON null and an empty CSV field are missing), checks shapes,
// types, ranges and finiteness, and fails with an error that names what is
// wrong and where ("inputs[0].data: expected 64 values for shape [2, 32], got
// 63"). Errors are InvalidArgument, except PayloadTooLarge for more rows than
// ParseOptions::max_rows and UnsupportedMedia for an unknown content type.
// Duplicate keys among those a parser reads are an error; unknown keys are
// skipped (but must be valid JSON). No JSON DOM is built (serving/json_reader.h):
// numbers go straight from the body into the matrix.
//
// All functions are pure and thread-safe. Depends on the standard library,
// core/result.h and the plain ml::Matrix struct only, so fuzz/ builds it alone.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "ml/xgboost_model.h"

namespace takt::serving {

inline constexpr size_t kDefaultMaxRows = 100000;

struct ParseOptions {
  size_t max_rows = kDefaultMaxRows;
  // OIP binary tensor extension: the value of the Inference-Header-Content-Length
  // request header. The first N bytes of the body are the JSON header, the rest
  // the tensors of the inputs that declare parameters.binary_data_size, in order.
  std::optional<size_t> json_header_length;
};

// What every protocol parses into.
struct InferenceInput {
  ml::Matrix rows;  // rows x features, in the model's feature order, NaN = missing
  std::string id;   // OIP request id ("" if none)
  // OIP "outputs": the names asked for (empty = all), and whether the reply
  // should use the binary tensor extension (parameters.binary_data_output of
  // the request or binary_data of any requested output).
  std::vector<std::string> requested_outputs;
  bool binary_output = false;
};
using OipRequest = InferenceInput;  // the former name

// Open Inference Protocol v2 infer request. Either one input of shape [n, f] (or
// [f] for one row) holding the features in the model's order, or one input per
// feature, named as the feature, of shape [n] or [n, 1]. Datatypes BOOL,
// UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 (integers must be in range of
// their type); `data` flat or nested exactly as `shape`, or binary (see
// ParseOptions::json_header_length).
Result<InferenceInput> ParseOipInfer(std::string_view body, const std::vector<std::string>& feature_names,
                                     const ParseOptions& options = {});

// SageMaker text/csv: one row per line, features in the model's order, no
// header; CRLF, a final newline, blank lines, spaces around values and quoted
// fields are accepted; an empty field is a missing value.
Result<ml::Matrix> ParseCsvRows(std::string_view body, size_t num_features, const ParseOptions& options = {});

// application/json for SageMaker and MLflow: {"instances": ...}, {"inputs": ...},
// {"dataframe_split": {"columns", "data", "index"?}}, {"dataframe_records": [...]},
// a bare list of rows or a single row. Rows are arrays in the model's feature
// order, or objects keyed by feature name (as are dataframe_split's columns and
// the dict form of "inputs": column -> list): missing and unknown names are
// errors. {"features": [...]} objects are positional rows (SageMaker).
Result<ml::Matrix> ParseJsonInstances(std::string_view body, const std::vector<std::string>& feature_names,
                                      const ParseOptions& options = {});
// The former signature: positional forms only (objects keyed by name are an error).
Result<ml::Matrix> ParseJsonInstances(std::string_view body, size_t num_features);

// SageMaker/MLflow invocations by Content-Type ("text/csv" or "application/json",
// parameters such as "; charset=utf-8" ignored); UnsupportedMedia otherwise, and
// InvalidArgument for an empty body.
Result<InferenceInput> ParseInvocation(std::string_view content_type, std::string_view body,
                                       const std::vector<std::string>& feature_names,
                                       const ParseOptions& options = {});

// Predictions of `rows` rows with `cols` outputs each, row-major; cols = 1 is a
// single output per row. Views the values: they must outlive the view.
struct PredictionsView {
  PredictionsView(std::span<const float> v, size_t r, size_t c) : values(v), rows(r), cols(c) {}
  PredictionsView(const std::vector<float>& v) : values(v), rows(v.size()), cols(1) {}  // NOLINT
  std::span<const float> values;
  size_t rows;
  size_t cols;
};

// {"predictions": [0.5, ...]} or, with several outputs, [[0.1, 0.9], ...].
// Non-finite predictions are written as null.
std::string RenderJsonPredictions(PredictionsView predictions);
// One line per row, outputs separated by commas; a non-finite prediction is an empty field.
std::string RenderCsvPredictions(PredictionsView predictions);

// An OIP infer response. Binary (when `request.binary_output`): the body is the
// JSON header followed by the raw little-endian FP32 tensor; send
// `json_header_length` as Inference-Header-Content-Length and Content-Type
// application/octet-stream. Otherwise JSON (json_header_length = nullopt).
struct OipReply {
  std::string body;
  std::optional<size_t> json_header_length;
  std::string_view content_type;  // "application/json" or "application/octet-stream"
};
// The output is named "predict", datatype FP32, shape [n] (or [n, k]).
OipReply RenderOipReply(std::string_view model, int version, const InferenceInput& request,
                        PredictionsView predictions);
// The former JSON-only form.
std::string RenderOipInfer(const std::string& model, int version, const std::string& id,
                           const std::vector<float>& predictions);
std::string RenderOipMetadata(const std::string& model, int version,
                              const std::vector<std::string>& features);

}  // namespace takt::serving
