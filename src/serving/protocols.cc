#include "serving/protocols.h"

#include <charconv>
#include <cmath>

#include "core/json.h"

namespace takt::serving {
namespace {

constexpr size_t kMaxRows = 100000;

bool IsKnownDatatype(const std::string& t) {
  static const char* kTypes[] = {"FP32",  "FP64",   "INT8",   "INT16",  "INT32", "INT64",
                                 "UINT8", "UINT16", "UINT32", "UINT64", "BOOL",  "FP16"};
  for (const char* k : kTypes)
    if (t == k) return true;
  return false;
}

// Flattens nested arrays of numbers (or booleans) into `out`.
Status Flatten(const Json& j, std::vector<float>& out, const std::string& where) {
  if (j.is_array()) {
    for (const auto& x : j) TAKT_RETURN_IF_ERROR(Flatten(x, out, where));
    return Ok();
  }
  if (j.is_boolean()) {
    out.push_back(j.get<bool>() ? 1.0f : 0.0f);
    return Ok();
  }
  if (!j.is_number())
    return InvalidArgument(where + ": data must hold numbers, found " + std::string(j.type_name()));
  double v = j.get<double>();
  if (!std::isfinite(v)) return InvalidArgument(where + ": data holds a non-finite number");
  out.push_back(static_cast<float>(v));
  return Ok();
}

Result<std::vector<int64_t>> Shape(const Json& input, const std::string& where) {
  auto it = input.find("shape");
  if (it == input.end() || !it->is_array() || it->empty() || it->size() > 2) {
    return InvalidArgument(where + ": 'shape' must be an array of 1 or 2 dimensions");
  }
  std::vector<int64_t> shape;
  for (const auto& d : *it) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return InvalidArgument(where + ": 'shape' must hold non-negative integers");
    }
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

}  // namespace

Result<OipRequest> ParseOipInfer(std::string_view body, const std::vector<std::string>& features) {
  TAKT_ASSIGN_OR_RETURN(Json root, ParseJson(body, "inference request"));
  if (!root.is_object()) return InvalidArgument("inference request: expected a JSON object with 'inputs'");
  OipRequest req;
  if (auto id = root.find("id"); id != root.end() && id->is_string()) req.id = id->get<std::string>();
  auto inputs = root.find("inputs");
  if (inputs == root.end() || !inputs->is_array() || inputs->empty()) {
    return InvalidArgument("inference request: 'inputs' must be a non-empty array");
  }
  const size_t f = features.size();
  for (const auto& in : *inputs) {
    if (!in.is_object()) return InvalidArgument("inference request: every input must be an object");
    std::string name = in.value("name", "");
    std::string where = "input '" + name + "'";
    std::string datatype = in.value("datatype", "");
    if (!IsKnownDatatype(datatype)) {
      return InvalidArgument(where + ": datatype '" + datatype +
                             "' is not one of FP32, FP64, INT*, UINT*, BOOL");
    }
    if (in.find("data") == in.end()) return InvalidArgument(where + ": missing 'data'");
  }
  if (inputs->size() == 1 && (f != 1 || (*inputs)[0].value("name", "") != features[0])) {
    const Json& in = (*inputs)[0];
    std::string where = "input '" + in.value("name", "") + "'";
    TAKT_ASSIGN_OR_RETURN(auto shape, Shape(in, where));
    int64_t rows = shape.size() == 1 ? 1 : shape[0];
    int64_t cols = shape.size() == 1 ? shape[0] : shape[1];
    if (cols != static_cast<int64_t>(f)) {
      return InvalidArgument(where + ": shape " + in["shape"].dump() + " has " + std::to_string(cols) +
                             " features; the model expects " + std::to_string(f));
    }
    if (rows > static_cast<int64_t>(kMaxRows)) return InvalidArgument(where + ": more than 100000 rows");
    TAKT_RETURN_IF_ERROR(Flatten(in["data"], req.rows.values, where));
    if (req.rows.values.size() != static_cast<size_t>(rows * cols)) {
      return InvalidArgument(where + ": data holds " + std::to_string(req.rows.values.size()) +
                             " values but shape " + in["shape"].dump() + " needs " +
                             std::to_string(rows * cols));
    }
    req.rows.rows = static_cast<size_t>(rows);
    req.rows.cols = f;
    return req;
  }
  // One input per feature.
  std::vector<std::vector<float>> columns(f);
  std::vector<bool> seen(f, false);
  int64_t rows = -1;
  for (const auto& in : *inputs) {
    std::string name = in.value("name", "");
    size_t idx = f;
    for (size_t i = 0; i < f; ++i)
      if (features[i] == name) idx = i;
    if (idx == f) return InvalidArgument("input '" + name + "' is not a feature of this model");
    if (seen[idx]) return InvalidArgument("input '" + name + "' is given twice");
    seen[idx] = true;
    std::string where = "input '" + name + "'";
    TAKT_ASSIGN_OR_RETURN(auto shape, Shape(in, where));
    if (shape.size() == 2 && shape[1] != 1) return InvalidArgument(where + ": shape must be [n] or [n, 1]");
    if (rows >= 0 && shape[0] != rows)
      return InvalidArgument(where + ": inputs disagree on the number of rows");
    rows = shape[0];
    if (rows > static_cast<int64_t>(kMaxRows)) return InvalidArgument(where + ": more than 100000 rows");
    TAKT_RETURN_IF_ERROR(Flatten(in["data"], columns[idx], where));
    if (columns[idx].size() != static_cast<size_t>(rows)) {
      return InvalidArgument(where + ": data holds " + std::to_string(columns[idx].size()) +
                             " values, shape says " + std::to_string(rows));
    }
  }
  for (size_t i = 0; i < f; ++i) {
    if (!seen[i]) return InvalidArgument("missing input for feature '" + features[i] + "'");
  }
  req.rows.rows = static_cast<size_t>(rows);
  req.rows.cols = f;
  req.rows.values.resize(req.rows.rows * f);
  for (size_t r = 0; r < req.rows.rows; ++r)
    for (size_t c = 0; c < f; ++c) req.rows.values[r * f + c] = columns[c][r];
  return req;
}

std::string RenderOipInfer(const std::string& model, int version, const std::string& id,
                           const std::vector<float>& predictions) {
  Json out = {{"model_name", model},
              {"model_version", std::to_string(version)},
              {"outputs", Json::array({{{"name", "predict"},
                                        {"shape", {predictions.size()}},
                                        {"datatype", "FP32"},
                                        {"data", predictions}}})}};
  if (!id.empty()) out["id"] = id;
  return out.dump();
}

std::string RenderOipMetadata(const std::string& model, int version,
                              const std::vector<std::string>& features) {
  Json inputs = Json::array();
  inputs.push_back({{"name", "input-0"}, {"datatype", "FP32"}, {"shape", {-1, features.size()}}});
  return Json{{"name", model},
              {"versions", {std::to_string(version)}},
              {"platform", "xgboost"},
              {"inputs", inputs},
              {"outputs", Json::array({{{"name", "predict"}, {"datatype", "FP32"}, {"shape", {-1}}}})},
              {"parameters", {{"feature_names", features}}}}
      .dump();
}

Result<ml::Matrix> ParseCsvRows(std::string_view body, size_t f) {
  ml::Matrix m;
  m.cols = f;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t fields = 0;
    size_t p = 0;
    while (true) {
      size_t comma = line.find(',', p);
      std::string_view field =
          line.substr(p, comma == std::string_view::npos ? std::string_view::npos : comma - p);
      while (!field.empty() && field.front() == ' ') field.remove_prefix(1);
      while (!field.empty() && field.back() == ' ') field.remove_suffix(1);
      ++fields;
      if (fields > f) {
        return InvalidArgument("csv line " + std::to_string(line_no) + ": more than " + std::to_string(f) +
                               " values; the model expects " + std::to_string(f) + " features");
      }
      float v = 0;
      if (field.empty()) {
        v = std::nanf("");  // a missing value: the model's default direction
      } else {
        auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
        if (ec != std::errc() || ptr != field.data() + field.size() || !std::isfinite(v)) {
          return InvalidArgument("csv line " + std::to_string(line_no) + ", value " + std::to_string(fields) +
                                 ": '" + std::string(field.substr(0, 32)) + "' is not a finite number");
        }
      }
      m.values.push_back(v);
      if (comma == std::string_view::npos) break;
      p = comma + 1;
    }
    if (fields != f) {
      return InvalidArgument("csv line " + std::to_string(line_no) + ": " + std::to_string(fields) +
                             " values; the model expects " + std::to_string(f) + " features");
    }
    ++m.rows;
    if (m.rows > kMaxRows) return InvalidArgument("csv: more than 100000 rows in one request");
  }
  if (m.rows == 0) return InvalidArgument("csv: the body holds no rows");
  return m;
}

std::string RenderCsvPredictions(const std::vector<float>& predictions) {
  std::string out;
  char buf[32];
  for (float p : predictions) {
    auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, p);
    out.append(buf, ptr);
    out += '\n';
  }
  return out;
}

Result<ml::Matrix> ParseJsonInstances(std::string_view body, size_t f) {
  TAKT_ASSIGN_OR_RETURN(Json root, ParseJson(body, "request body"));
  const Json* rows = &root;
  if (root.is_object()) {
    auto it = root.find("instances");
    if (it == root.end()) return InvalidArgument("request body: expected {\"instances\": [[...], ...]}");
    rows = &*it;
  }
  if (!rows->is_array() || rows->empty())
    return InvalidArgument("request body: instances must be a non-empty array");
  ml::Matrix m;
  m.cols = f;
  for (size_t r = 0; r < rows->size(); ++r) {
    const Json& row = (*rows)[r];
    std::string where = "instance " + std::to_string(r);
    if (!row.is_array()) return InvalidArgument(where + ": must be an array of numbers");
    if (row.size() != f) {
      return InvalidArgument(where + ": " + std::to_string(row.size()) + " values; the model expects " +
                             std::to_string(f) + " features");
    }
    for (const auto& x : row) {
      if (x.is_array() || x.is_object()) return InvalidArgument(where + ": must be a flat array of numbers");
      TAKT_RETURN_IF_ERROR(Flatten(x, m.values, where));
    }
    ++m.rows;
  }
  if (m.rows > kMaxRows) return InvalidArgument("request body: more than 100000 instances");
  return m;
}

std::string RenderJsonPredictions(const std::vector<float>& predictions) {
  return Json{{"predictions", predictions}}.dump();
}

}  // namespace takt::serving
