#include "serving/protocols.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "serving/json_reader.h"

namespace takt::serving {
namespace {

using Type = JsonReader::Type;

constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();

std::string N(size_t v) { return std::to_string(v); }

std::string_view TypeName(Type t) {
  switch (t) {
    case Type::kObject:
      return "an object";
    case Type::kArray:
      return "an array";
    case Type::kString:
      return "a string";
    case Type::kNumber:
      return "a number";
    case Type::kBool:
      return "a boolean";
    case Type::kNull:
      return "null";
  }
  return "a value";
}

std::string Quoted(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, 64));
  if (s.size() > 64) out += "...";
  out += "'";
  return out;
}

// "'a', 'b', 'c'" (at most 10 names, then "and 5 more").
std::string NameList(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 10; ++i) {
    if (i) out += ", ";
    out += Quoted(names[i]);
  }
  if (names.size() > 10) out += " and " + N(names.size() - 10) + " more";
  return out;
}

std::string_view MediaType(std::string_view content_type) {
  size_t semi = content_type.find(';');
  if (semi != std::string_view::npos) content_type = content_type.substr(0, semi);
  while (!content_type.empty() && content_type.back() == ' ') content_type.remove_suffix(1);
  while (!content_type.empty() && content_type.front() == ' ') content_type.remove_prefix(1);
  return content_type;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::unexpected<Error> TooManyRows(std::string_view where, size_t max_rows) {
  return PayloadTooLarge(std::string(where) + ": more than " + N(max_rows) + " rows in one request");
}

// The model's features, by position and (when known) by name.
struct Features {
  const std::vector<std::string>* names;  // null: positional forms only
  size_t count;

  // The feature called `name`; `hint` is the likely position (tried first).
  size_t Find(std::string_view name, size_t hint) const {
    if (hint < count && (*names)[hint] == name) return hint;
    for (size_t i = 0; i < count; ++i) {
      if ((*names)[i] == name) return i;
    }
    return count;
  }
};

// ---------------------------------------------------------------------------
// JSON rows (SageMaker, MLflow).

// Where a cell is, for error messages: "instances[2][5]" or "dataframe_records[2].b".
struct CellLoc {
  std::string_view path;
  size_t row;
  size_t col;
  const std::string* name;  // the column's name, if keyed by name
};

std::string CellPath(const CellLoc& loc) {
  std::string s(loc.path);
  s += "[" + N(loc.row) + "]";
  if (loc.name) {
    s += "." + *loc.name;
  } else {
    s += "[" + N(loc.col) + "]";
  }
  return s;
}

// Reads a number (null = missing, booleans as 0/1) into *out.
Status ReadCell(JsonReader& r, float* out, const CellLoc& loc) {
  TAKT_ASSIGN_OR_RETURN(Type t, r.Peek());
  switch (t) {
    case Type::kNumber: {
      TAKT_ASSIGN_OR_RETURN(std::string_view text, r.ReadNumberText());
      if (ParseFloat(text, out) != FloatParse::kOk) {
        return InvalidArgument(std::string(loc.path) + ": value " + std::string(text) + " at row " +
                               N(loc.row) + ", column " + N(loc.col) +
                               (loc.name ? " (" + Quoted(*loc.name) + ")" : "") + " is not finite");
      }
      return Ok();
    }
    case Type::kNull:
      *out = kMissing;
      return r.ReadNull();
    case Type::kBool: {
      TAKT_ASSIGN_OR_RETURN(bool b, r.ReadBool());
      *out = b ? 1.0f : 0.0f;
      return Ok();
    }
    default:
      return InvalidArgument(CellPath(loc) + ": expected a number or null, found " +
                             std::string(TypeName(t)));
  }
}

class RowsParser {
 public:
  RowsParser(JsonReader& r, Features features, const ParseOptions& options, ml::Matrix& m)
      : r_(r), f_(features), options_(options), m_(m) {
    m_.cols = f_.count;
  }

  float* AddRow() {
    if (m_.rows >= options_.max_rows) return nullptr;
    m_.values.resize((m_.rows + 1) * f_.count);
    return m_.values.data() + m_.rows++ * f_.count;
  }

  // A positional row: an array of exactly f values; with `map`, value j goes
  // to feature map[j] (and there are map->size() values).
  Status ArrayRow(float* dst, std::string_view path, size_t row, const std::vector<size_t>* map) {
    TAKT_RETURN_IF_ERROR(r_.EnterArray());
    const size_t want = map ? map->size() : f_.count;
    size_t n = 0;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r_.NextElement());
      if (!more) break;
      if (n < want) {
        size_t col = map ? (*map)[n] : n;
        TAKT_RETURN_IF_ERROR(ReadCell(r_, dst + col, CellLoc{path, row, n, nullptr}));
      } else {
        TAKT_RETURN_IF_ERROR(r_.Skip());
      }
      ++n;
    }
    if (n != want) {
      return InvalidArgument(
          std::string(path) + "[" + N(row) + "]: " + N(n) + " values; " +
          (map ? "the columns name " + N(want) : "the model expects " + N(want) + " features"));
    }
    return Ok();
  }

  // A row keyed by feature name, or SageMaker's {"features": [...]}.
  Status ObjectRow(float* dst, std::string_view path, size_t row) {
    TAKT_RETURN_IF_ERROR(r_.EnterObject());
    seen_.assign(f_.count, 0);
    std::vector<std::string> unknown;
    bool positional = false;
    size_t ordinal = 0;
    std::string_view key;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r_.NextMember(&key));
      if (!more) break;
      size_t idx = f_.names ? f_.Find(key, ordinal) : f_.count;
      ++ordinal;
      if (idx == f_.count && key == "features") {
        TAKT_ASSIGN_OR_RETURN(Type t, r_.Peek());
        if (t == Type::kArray && ordinal == 1) {
          TAKT_RETURN_IF_ERROR(ArrayRow(dst, path, row, nullptr));
          positional = true;
          continue;
        }
      }
      if (positional) {
        return InvalidArgument(std::string(path) + "[" + N(row) + "]: 'features' must be the only key");
      }
      if (!f_.names) {
        return InvalidArgument(std::string(path) + "[" + N(row) +
                               "]: rows keyed by column name need the model's feature names");
      }
      if (idx == f_.count) {
        unknown.emplace_back(key);
        TAKT_RETURN_IF_ERROR(r_.Skip());
        continue;
      }
      if (seen_[idx]) {
        return InvalidArgument(std::string(path) + "[" + N(row) + "]: duplicate column " + Quoted(key));
      }
      seen_[idx] = 1;
      TAKT_RETURN_IF_ERROR(ReadCell(r_, dst + idx, CellLoc{path, row, idx, &(*f_.names)[idx]}));
    }
    if (!unknown.empty()) {
      return InvalidArgument(std::string(path) + "[" + N(row) + "]: unknown column" +
                             (unknown.size() > 1 ? "s " : " ") + NameList(unknown) +
                             " (not features of this model)");
    }
    if (positional) return Ok();
    if (!f_.names) {
      return InvalidArgument(std::string(path) + "[" + N(row) +
                             "]: rows keyed by column name need the model's feature names");
    }
    std::vector<std::string> missing;
    for (size_t i = 0; i < f_.count; ++i) {
      if (!seen_[i]) missing.push_back((*f_.names)[i]);
    }
    if (!missing.empty()) {
      return InvalidArgument(std::string(path) + "[" + N(row) + "]: missing feature" +
                             (missing.size() > 1 ? "s " : " ") + NameList(missing));
    }
    return Ok();
  }

  // A list of rows: arrays, objects, or (for a one-feature model) scalars.
  Status RowList(std::string_view path, const std::vector<size_t>* map = nullptr) {
    TAKT_ASSIGN_OR_RETURN(Type t, r_.Peek());
    if (t != Type::kArray) {
      return InvalidArgument(std::string(path) + ": expected a list of rows, found " +
                             std::string(TypeName(t)));
    }
    TAKT_RETURN_IF_ERROR(r_.EnterArray());
    size_t row = 0;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r_.NextElement());
      if (!more) break;
      TAKT_ASSIGN_OR_RETURN(Type et, r_.Peek());
      float* dst = AddRow();
      if (!dst) return TooManyRows(path, options_.max_rows);
      if (et == Type::kArray) {
        TAKT_RETURN_IF_ERROR(ArrayRow(dst, path, row, map));
      } else if (et == Type::kObject && !map) {
        TAKT_RETURN_IF_ERROR(ObjectRow(dst, path, row));
      } else if (f_.count == 1 && !map && et != Type::kObject) {
        TAKT_RETURN_IF_ERROR(ReadCell(r_, dst, CellLoc{path, row, 0, nullptr}));
      } else {
        return InvalidArgument(std::string(path) + "[" + N(row) + "]: expected a row (an array of " +
                               N(map ? map->size() : f_.count) + " values" + (map ? "" : " or an object") +
                               "), found " + std::string(TypeName(et)));
      }
      ++row;
    }
    if (row == 0) return InvalidArgument(std::string(path) + ": no rows");
    return Ok();
  }

  // The body is a bare array: a list of rows or one row of scalars.
  Status BareArray() {
    const size_t start = r_.offset();
    const int depth = r_.depth();
    TAKT_RETURN_IF_ERROR(r_.EnterArray());
    TAKT_ASSIGN_OR_RETURN(bool more, r_.NextElement());
    Type first = Type::kArray;
    if (more) {
      TAKT_ASSIGN_OR_RETURN(first, r_.Peek());
    }
    r_ = r_.At(start, depth);
    if (first == Type::kArray || first == Type::kObject) return RowList("instances");
    float* dst = AddRow();
    if (!dst) return TooManyRows("instances", options_.max_rows);
    return ArrayRow(dst, "instances", 0, nullptr);
  }

  // Column names -> positions of features; all features must be named once.
  Result<std::vector<size_t>> ColumnMap(std::string_view path) {
    if (!f_.names) {
      return InvalidArgument(std::string(path) + ": named columns need the model's feature names");
    }
    TAKT_RETURN_IF_ERROR(r_.EnterArray());
    std::vector<size_t> map;
    map.reserve(f_.count);
    std::vector<std::string> unknown;
    seen_.assign(f_.count, 0);
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r_.NextElement());
      if (!more) break;
      TAKT_ASSIGN_OR_RETURN(Type t, r_.Peek());
      if (t != Type::kString) {
        return InvalidArgument(std::string(path) + "[" + N(map.size() + unknown.size()) +
                               "]: expected a column name, found " + std::string(TypeName(t)));
      }
      TAKT_ASSIGN_OR_RETURN(std::string_view name, r_.ReadString());
      size_t idx = f_.Find(name, map.size() + unknown.size());
      if (idx == f_.count) {
        unknown.emplace_back(name);
        continue;
      }
      if (seen_[idx]) return InvalidArgument(std::string(path) + ": duplicate column " + Quoted(name));
      seen_[idx] = 1;
      map.push_back(idx);
    }
    if (!unknown.empty()) {
      return InvalidArgument(std::string(path) + ": unknown column" + (unknown.size() > 1 ? "s " : " ") +
                             NameList(unknown) + " (not features of this model)");
    }
    std::vector<std::string> missing;
    for (size_t i = 0; i < f_.count; ++i) {
      if (!seen_[i]) missing.push_back((*f_.names)[i]);
    }
    if (!missing.empty()) {
      return InvalidArgument(std::string(path) + ": missing feature" + (missing.size() > 1 ? "s " : " ") +
                             NameList(missing));
    }
    return map;
  }

  // {"columns": [...], "data": [[...]], "index": [...]}, keys in any order.
  Status DataframeSplit() {
    TAKT_ASSIGN_OR_RETURN(Type t, r_.Peek());
    if (t != Type::kObject) {
      return InvalidArgument("dataframe_split: expected an object with 'columns' and 'data', found " +
                             std::string(TypeName(t)));
    }
    TAKT_RETURN_IF_ERROR(r_.EnterObject());
    std::optional<std::vector<size_t>> map;
    std::optional<std::pair<size_t, int>> data_at;  // offset and depth of a deferred "data"
    bool have_data = false;
    std::string_view key;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r_.NextMember(&key));
      if (!more) break;
      if (key == "columns") {
        if (map) return InvalidArgument("dataframe_split: duplicate key 'columns'");
        TAKT_ASSIGN_OR_RETURN(Type ct, r_.Peek());
        if (ct != Type::kArray) {
          return InvalidArgument("dataframe_split.columns: expected a list of names, found " +
                                 std::string(TypeName(ct)));
        }
        TAKT_ASSIGN_OR_RETURN(map, ColumnMap("dataframe_split.columns"));
      } else if (key == "data") {
        if (have_data) return InvalidArgument("dataframe_split: duplicate key 'data'");
        have_data = true;
        if (map) {
          TAKT_RETURN_IF_ERROR(RowList("dataframe_split.data", &*map));
        } else {
          TAKT_RETURN_IF_ERROR(r_.Peek());
          data_at.emplace(r_.offset(), r_.depth());
          TAKT_RETURN_IF_ERROR(r_.Skip());
        }
      } else {
        TAKT_RETURN_IF_ERROR(r_.Skip());  // "index" and anything else
      }
    }
    if (!have_data) return InvalidArgument("dataframe_split: missing 'data'");
    if (data_at) {
      JsonReader data = r_.At(data_at->first, data_at->second);
      RowsParser p(data, f_, options_, m_);
      TAKT_RETURN_IF_ERROR(p.RowList("dataframe_split.data", map ? &*map : nullptr));
    }
    return Ok();
  }

  // MLflow's {"inputs": {"a": [1, 2], "b": [3, 4]}}.
  Status ColumnDict(std::string_view path) {
    if (!f_.names) {
      return InvalidArgument(std::string(path) + ": named columns need the model's feature names");
    }
    TAKT_RETURN_IF_ERROR(r_.EnterObject());
    seen_.assign(f_.count, 0);
    std::vector<std::string> unknown;
    std::vector<float> column;
    size_t ordinal = 0;
    bool have_rows = false;
    std::string_view key;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r_.NextMember(&key));
      if (!more) break;
      size_t idx = f_.Find(key, ordinal++);
      if (idx == f_.count) {
        unknown.emplace_back(key);
        TAKT_RETURN_IF_ERROR(r_.Skip());
        continue;
      }
      const std::string& name = (*f_.names)[idx];
      if (seen_[idx]) return InvalidArgument(std::string(path) + ": duplicate column " + Quoted(name));
      seen_[idx] = 1;
      TAKT_ASSIGN_OR_RETURN(Type t, r_.Peek());
      if (t != Type::kArray) {
        return InvalidArgument(std::string(path) + "." + name + ": expected a list of values, found " +
                               std::string(TypeName(t)));
      }
      TAKT_RETURN_IF_ERROR(r_.EnterArray());
      column.clear();
      while (true) {
        TAKT_ASSIGN_OR_RETURN(bool more_values, r_.NextElement());
        if (!more_values) break;
        if (column.size() >= options_.max_rows) return TooManyRows(path, options_.max_rows);
        float v = 0;
        TAKT_RETURN_IF_ERROR(ReadCell(r_, &v, CellLoc{path, column.size(), idx, &name}));
        column.push_back(v);
      }
      if (!have_rows) {
        have_rows = true;
        m_.rows = column.size();
        m_.values.assign(m_.rows * f_.count, kMissing);
      } else if (column.size() != m_.rows) {
        return InvalidArgument(std::string(path) + "." + name + ": " + N(column.size()) +
                               " values, but the columns before it have " + N(m_.rows));
      }
      for (size_t i = 0; i < column.size(); ++i) m_.values[i * f_.count + idx] = column[i];
    }
    if (!unknown.empty()) {
      return InvalidArgument(std::string(path) + ": unknown column" + (unknown.size() > 1 ? "s " : " ") +
                             NameList(unknown) + " (not features of this model)");
    }
    std::vector<std::string> missing;
    for (size_t i = 0; i < f_.count; ++i) {
      if (!seen_[i]) missing.push_back((*f_.names)[i]);
    }
    if (!missing.empty()) {
      return InvalidArgument(std::string(path) + ": missing feature" + (missing.size() > 1 ? "s " : " ") +
                             NameList(missing));
    }
    if (m_.rows == 0) return InvalidArgument(std::string(path) + ": no rows");
    return Ok();
  }

  Status Body() {
    TAKT_ASSIGN_OR_RETURN(Type t, r_.Peek());
    if (t == Type::kArray) return BareArray();
    if (t != Type::kObject) {
      return InvalidArgument("request body: expected a JSON object or array, found " +
                             std::string(TypeName(t)));
    }
    TAKT_RETURN_IF_ERROR(r_.EnterObject());
    std::string found;
    std::string_view key;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r_.NextMember(&key));
      if (!more) break;
      const bool known =
          key == "instances" || key == "inputs" || key == "dataframe_split" || key == "dataframe_records";
      if (!known) {
        TAKT_RETURN_IF_ERROR(r_.Skip());  // e.g. MLflow's "params"
        continue;
      }
      if (!found.empty()) {
        return InvalidArgument("request body: both '" + found + "' and '" + std::string(key) +
                               "'; send exactly one");
      }
      found = key;
      if (found == "dataframe_split") {
        TAKT_RETURN_IF_ERROR(DataframeSplit());
      } else if (found == "inputs") {
        TAKT_ASSIGN_OR_RETURN(Type it, r_.Peek());
        if (it == Type::kObject) {
          TAKT_RETURN_IF_ERROR(ColumnDict("inputs"));
        } else {
          TAKT_RETURN_IF_ERROR(RowList("inputs"));
        }
      } else {
        TAKT_RETURN_IF_ERROR(RowList(found == "instances" ? "instances" : "dataframe_records"));
      }
    }
    if (found.empty()) {
      return InvalidArgument(
          "request body: expected one of 'instances', 'inputs', 'dataframe_split' or 'dataframe_records'");
    }
    return Ok();
  }

 private:
  JsonReader& r_;
  Features f_;
  const ParseOptions& options_;
  ml::Matrix& m_;
  std::vector<uint8_t> seen_;
};

Result<ml::Matrix> ParseJsonRows(std::string_view body, Features features, const ParseOptions& options) {
  if (body.empty()) return InvalidArgument("request body: empty");
  ml::Matrix m;
  JsonReader r(body);
  RowsParser p(r, features, options, m);
  TAKT_RETURN_IF_ERROR(p.Body());
  TAKT_RETURN_IF_ERROR(r.Finish());
  return m;
}

// ---------------------------------------------------------------------------
// Open Inference Protocol.

enum class DType { kBool, kU8, kU16, kU32, kU64, kI8, kI16, kI32, kI64, kF16, kF32, kF64 };

struct DTypeInfo {
  std::string_view name;
  DType type;
  size_t bytes;
};

constexpr DTypeInfo kDTypes[] = {
    {"BOOL", DType::kBool, 1},  {"UINT8", DType::kU8, 1},   {"UINT16", DType::kU16, 2},
    {"UINT32", DType::kU32, 4}, {"UINT64", DType::kU64, 8}, {"INT8", DType::kI8, 1},
    {"INT16", DType::kI16, 2},  {"INT32", DType::kI32, 4},  {"INT64", DType::kI64, 8},
    {"FP16", DType::kF16, 2},   {"FP32", DType::kF32, 4},   {"FP64", DType::kF64, 8},
};

bool IsInteger(DType t) {
  return t != DType::kBool && t != DType::kF16 && t != DType::kF32 && t != DType::kF64;
}

// Range of an integer datatype, as int64 (UINT64's upper bound is checked apart).
std::pair<int64_t, int64_t> IntRange(DType t) {
  switch (t) {
    case DType::kU8:
      return {0, 255};
    case DType::kU16:
      return {0, 65535};
    case DType::kU32:
      return {0, 4294967295LL};
    case DType::kU64:
      return {0, std::numeric_limits<int64_t>::max()};
    case DType::kI8:
      return {-128, 127};
    case DType::kI16:
      return {-32768, 32767};
    case DType::kI32:
      return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    default:
      return {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  }
}

std::string ShapeText(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3FF) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000 | (mant << 13);
  } else {
    bits = sign | (exp + 127 - 15) << 23 | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

struct Tensor {
  size_t index = 0;
  std::string path;  // "inputs[0]"
  std::string name;
  bool has_name = false;
  std::optional<std::vector<uint64_t>> shape;
  const DTypeInfo* dtype = nullptr;
  std::optional<uint64_t> binary_size;
  bool has_data = false;
  std::optional<std::pair<size_t, int>> data_at;  // deferred "data"
  bool parsed = false;
  std::vector<float> values;

  uint64_t Count() const {
    uint64_t n = 1;
    for (uint64_t d : *shape) n *= d;  // dims are bounded by Shape()
    return n;
  }
  // "row 1, column 2" or "element 5"
  std::string Locate(size_t k) const {
    if (shape && shape->size() == 2 && (*shape)[1] > 0) {
      return "row " + N(k / (*shape)[1]) + ", column " + N(k % (*shape)[1]);
    }
    return "element " + N(k);
  }
};

class OipParser {
 public:
  OipParser(const std::vector<std::string>& features, const ParseOptions& options)
      : features_(features), options_(options) {}

  Result<InferenceInput> Parse(std::string_view body) {
    if (body.empty()) return InvalidArgument("inference request: empty body");
    std::string_view header = body, binary;
    if (options_.json_header_length) {
      size_t n = *options_.json_header_length;
      if (n > body.size()) {
        return InvalidArgument("Inference-Header-Content-Length " + N(n) + " is larger than the body (" +
                               N(body.size()) + " bytes)");
      }
      header = body.substr(0, n);
      binary = body.substr(n);
    }
    JsonReader r(header);
    TAKT_RETURN_IF_ERROR(Root(r));
    TAKT_RETURN_IF_ERROR(r.Finish());
    for (Tensor& t : tensors_) TAKT_RETURN_IF_ERROR(Finalize(r, t));
    TAKT_RETURN_IF_ERROR(Binary(binary));
    TAKT_RETURN_IF_ERROR(Assemble());
    return std::move(out_);
  }

 private:
  Status Root(JsonReader& r) {
    TAKT_ASSIGN_OR_RETURN(Type t, r.Peek());
    if (t != Type::kObject) {
      return InvalidArgument("inference request: expected a JSON object with 'inputs', found " +
                             std::string(TypeName(t)));
    }
    TAKT_RETURN_IF_ERROR(r.EnterObject());
    bool seen_id = false, seen_params = false, seen_inputs = false, seen_outputs = false;
    auto once = [](bool& seen, std::string_view key) -> Status {
      if (seen) return InvalidArgument("inference request: duplicate key '" + std::string(key) + "'");
      seen = true;
      return Ok();
    };
    std::string_view key;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextMember(&key));
      if (!more) break;
      if (key == "id") {
        TAKT_RETURN_IF_ERROR(once(seen_id, "id"));
        TAKT_ASSIGN_OR_RETURN(Type it, r.Peek());
        if (it != Type::kString) {
          return InvalidArgument("inference request: 'id' must be a string, found " +
                                 std::string(TypeName(it)));
        }
        TAKT_ASSIGN_OR_RETURN(std::string_view id, r.ReadString());
        out_.id = id;
      } else if (key == "parameters") {
        TAKT_RETURN_IF_ERROR(once(seen_params, "parameters"));
        TAKT_RETURN_IF_ERROR(Parameters(r, "parameters", "binary_data_output", &out_.binary_output));
      } else if (key == "inputs") {
        TAKT_RETURN_IF_ERROR(once(seen_inputs, "inputs"));
        TAKT_RETURN_IF_ERROR(Inputs(r));
      } else if (key == "outputs") {
        TAKT_RETURN_IF_ERROR(once(seen_outputs, "outputs"));
        TAKT_RETURN_IF_ERROR(Outputs(r));
      } else {
        TAKT_RETURN_IF_ERROR(r.Skip());
      }
    }
    if (tensors_.empty()) return InvalidArgument("inference request: 'inputs' must be a non-empty array");
    return Ok();
  }

  // A "parameters" object: reads the boolean `flag` (if given), skips the rest.
  Status Parameters(JsonReader& r, const std::string& path, std::string_view flag, bool* value) {
    TAKT_ASSIGN_OR_RETURN(Type t, r.Peek());
    if (t != Type::kObject)
      return InvalidArgument(path + ": expected an object, found " + std::string(TypeName(t)));
    TAKT_RETURN_IF_ERROR(r.EnterObject());
    std::string_view key;
    bool seen = false;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextMember(&key));
      if (!more) break;
      if (key != flag) {
        TAKT_RETURN_IF_ERROR(r.Skip());
        continue;
      }
      if (seen) return InvalidArgument(path + ": duplicate key '" + std::string(flag) + "'");
      seen = true;
      TAKT_ASSIGN_OR_RETURN(Type ft, r.Peek());
      if (ft != Type::kBool) {
        return InvalidArgument(path + "." + std::string(flag) + ": expected true or false, found " +
                               std::string(TypeName(ft)));
      }
      TAKT_ASSIGN_OR_RETURN(bool b, r.ReadBool());
      *value = *value || b;
    }
    return Ok();
  }

  Status Outputs(JsonReader& r) {
    TAKT_ASSIGN_OR_RETURN(Type t, r.Peek());
    if (t != Type::kArray)
      return InvalidArgument("outputs: expected an array, found " + std::string(TypeName(t)));
    TAKT_RETURN_IF_ERROR(r.EnterArray());
    for (size_t i = 0;; ++i) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextElement());
      if (!more) break;
      const std::string path = "outputs[" + N(i) + "]";
      TAKT_ASSIGN_OR_RETURN(Type ot, r.Peek());
      if (ot != Type::kObject)
        return InvalidArgument(path + ": expected an object, found " + std::string(TypeName(ot)));
      TAKT_RETURN_IF_ERROR(r.EnterObject());
      bool has_name = false, has_params = false;
      std::string_view key;
      while (true) {
        TAKT_ASSIGN_OR_RETURN(bool more_keys, r.NextMember(&key));
        if (!more_keys) break;
        if (key == "name") {
          if (has_name) return InvalidArgument(path + ": duplicate key 'name'");
          has_name = true;
          TAKT_ASSIGN_OR_RETURN(Type nt, r.Peek());
          if (nt != Type::kString) {
            return InvalidArgument(path + ".name: expected a string, found " + std::string(TypeName(nt)));
          }
          TAKT_ASSIGN_OR_RETURN(std::string_view name, r.ReadString());
          out_.requested_outputs.emplace_back(name);
        } else if (key == "parameters") {
          if (has_params) return InvalidArgument(path + ": duplicate key 'parameters'");
          has_params = true;
          TAKT_RETURN_IF_ERROR(Parameters(r, path + ".parameters", "binary_data", &out_.binary_output));
        } else {
          TAKT_RETURN_IF_ERROR(r.Skip());
        }
      }
      if (!has_name) return InvalidArgument(path + ": missing 'name'");
    }
    return Ok();
  }

  Status Inputs(JsonReader& r) {
    TAKT_ASSIGN_OR_RETURN(Type t, r.Peek());
    if (t != Type::kArray) {
      return InvalidArgument("inference request: 'inputs' must be a non-empty array, found " +
                             std::string(TypeName(t)));
    }
    TAKT_RETURN_IF_ERROR(r.EnterArray());
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextElement());
      if (!more) break;
      if (tensors_.size() >= features_.size() + 1) {
        return InvalidArgument("inference request: more inputs than the model has features (" +
                               N(features_.size()) + ")");
      }
      tensors_.emplace_back();
      Tensor& tensor = tensors_.back();
      tensor.index = tensors_.size() - 1;
      tensor.path = "inputs[" + N(tensor.index) + "]";
      TAKT_RETURN_IF_ERROR(Input(r, tensor));
    }
    return Ok();
  }

  Status Input(JsonReader& r, Tensor& t) {
    TAKT_ASSIGN_OR_RETURN(Type type, r.Peek());
    if (type != Type::kObject) {
      return InvalidArgument(t.path + ": expected an object, found " + std::string(TypeName(type)));
    }
    TAKT_RETURN_IF_ERROR(r.EnterObject());
    bool has_params = false;
    std::string_view key;
    auto dup = [&](std::string_view k) {
      return InvalidArgument(t.path + ": duplicate key '" + std::string(k) + "'");
    };
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextMember(&key));
      if (!more) break;
      if (key == "name") {
        if (t.has_name) return dup(key);
        t.has_name = true;
        TAKT_ASSIGN_OR_RETURN(Type nt, r.Peek());
        if (nt != Type::kString) {
          return InvalidArgument(t.path + ".name: expected a string, found " + std::string(TypeName(nt)));
        }
        TAKT_ASSIGN_OR_RETURN(std::string_view name, r.ReadString());
        t.name = name;
      } else if (key == "datatype") {
        if (t.dtype) return dup(key);
        TAKT_ASSIGN_OR_RETURN(Type dt, r.Peek());
        if (dt != Type::kString) {
          return InvalidArgument(t.path + ".datatype: expected a string, found " + std::string(TypeName(dt)));
        }
        TAKT_ASSIGN_OR_RETURN(std::string_view name, r.ReadString());
        for (const DTypeInfo& info : kDTypes) {
          if (info.name == name) t.dtype = &info;
        }
        if (name == "BYTES") {
          return InvalidArgument(t.path +
                                 ": datatype BYTES (strings) is not supported: the model takes numbers");
        }
        if (!t.dtype) {
          return InvalidArgument(t.path + ": datatype " + Quoted(name) +
                                 " is not one of BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64");
        }
      } else if (key == "shape") {
        if (t.shape) return dup(key);
        TAKT_RETURN_IF_ERROR(Shape(r, t));
      } else if (key == "data") {
        if (t.has_data) return dup(key);
        t.has_data = true;
        if (t.dtype && t.shape) {
          TAKT_RETURN_IF_ERROR(Data(r, t));
        } else {
          TAKT_RETURN_IF_ERROR(r.Peek());
          t.data_at.emplace(r.offset(), r.depth());
          TAKT_RETURN_IF_ERROR(r.Skip());
        }
      } else if (key == "parameters") {
        if (has_params) return dup(key);
        has_params = true;
        TAKT_RETURN_IF_ERROR(InputParameters(r, t));
      } else {
        TAKT_RETURN_IF_ERROR(r.Skip());
      }
    }
    return Ok();
  }

  Status InputParameters(JsonReader& r, Tensor& t) {
    const std::string path = t.path + ".parameters";
    TAKT_ASSIGN_OR_RETURN(Type type, r.Peek());
    if (type != Type::kObject) {
      return InvalidArgument(path + ": expected an object, found " + std::string(TypeName(type)));
    }
    TAKT_RETURN_IF_ERROR(r.EnterObject());
    std::string_view key;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextMember(&key));
      if (!more) break;
      if (key != "binary_data_size") {
        TAKT_RETURN_IF_ERROR(r.Skip());
        continue;
      }
      if (t.binary_size) return InvalidArgument(path + ": duplicate key 'binary_data_size'");
      TAKT_ASSIGN_OR_RETURN(Type nt, r.Peek());
      uint64_t size = 0;
      if (nt == Type::kNumber) {
        TAKT_ASSIGN_OR_RETURN(std::string_view text, r.ReadNumberText());
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), size);
        if (ec != std::errc() || ptr != text.data() + text.size()) nt = Type::kString;
      }
      if (nt != Type::kNumber)
        return InvalidArgument(path + ".binary_data_size: expected a non-negative integer");
      t.binary_size = size;
    }
    return Ok();
  }

  Status Shape(JsonReader& r, Tensor& t) {
    const std::string path = t.path + ".shape";
    TAKT_ASSIGN_OR_RETURN(Type type, r.Peek());
    if (type != Type::kArray) {
      return InvalidArgument(path + ": expected an array of dimensions, found " +
                             std::string(TypeName(type)));
    }
    TAKT_RETURN_IF_ERROR(r.EnterArray());
    std::vector<uint64_t> shape;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextElement());
      if (!more) break;
      TAKT_ASSIGN_OR_RETURN(Type dt, r.Peek());
      if (dt != Type::kNumber) {
        return InvalidArgument(path + ": dimensions must be non-negative integers, found " +
                               std::string(TypeName(dt)));
      }
      TAKT_ASSIGN_OR_RETURN(std::string_view text, r.ReadNumberText());
      uint64_t d = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
      if (ec != std::errc() || ptr != text.data() + text.size()) {
        return InvalidArgument(path + ": dimension " + std::string(text) + " is not a non-negative integer");
      }
      if (shape.size() >= 2) return InvalidArgument(path + ": expected 1 or 2 dimensions");
      shape.push_back(d);
    }
    if (shape.empty()) return InvalidArgument(path + ": expected 1 or 2 dimensions, got none");
    // Bound every dimension so that products cannot overflow: no valid request
    // has more than max_rows rows or features.
    const uint64_t bound =
        std::min<uint64_t>(std::max<uint64_t>(options_.max_rows, features_.size()), 1u << 24);
    for (uint64_t d : shape) {
      if (d > bound) {
        return PayloadTooLarge(t.path + ": shape " + ShapeText(shape) + " exceeds the limit of " +
                               N(options_.max_rows) + " rows");
      }
    }
    t.shape = std::move(shape);
    return Ok();
  }

  // One element of `t` at the reader (k-th in row-major order).
  Status Element(JsonReader& r, Tensor& t, size_t k) {
    TAKT_ASSIGN_OR_RETURN(Type type, r.Peek());
    const DType dt = t.dtype->type;
    if (type == Type::kNull) {
      TAKT_RETURN_IF_ERROR(r.ReadNull());
      t.values.push_back(kMissing);
      return Ok();
    }
    if (dt == DType::kBool) {
      if (type != Type::kBool) {
        return InvalidArgument(t.path + ".data: expected true or false (datatype BOOL) at " + t.Locate(k) +
                               ", found " + std::string(TypeName(type)));
      }
      TAKT_ASSIGN_OR_RETURN(bool b, r.ReadBool());
      t.values.push_back(b ? 1.0f : 0.0f);
      return Ok();
    }
    if (type != Type::kNumber) {
      return InvalidArgument(t.path + ".data: expected a number (datatype " + std::string(t.dtype->name) +
                             ") at " + t.Locate(k) + ", found " + std::string(TypeName(type)));
    }
    TAKT_ASSIGN_OR_RETURN(std::string_view text, r.ReadNumberText());
    const char* first = text.data();
    const char* last = first + text.size();
    if (IsInteger(dt)) {
      int64_t i = 0;
      auto [ptr, ec] = std::from_chars(first, last, i);
      if (ptr != last) {
        return InvalidArgument(t.path + ".data: value " + std::string(text) + " at " + t.Locate(k) +
                               " is not an integer (datatype " + std::string(t.dtype->name) + ")");
      }
      float v = static_cast<float>(i);
      bool in_range = ec == std::errc();
      if (in_range) {
        auto [lo, hi] = IntRange(dt);
        in_range = i >= lo && i <= hi;
      } else if (dt == DType::kU64) {  // beyond INT64 but maybe within UINT64
        uint64_t u = 0;
        auto [uptr, uec] = std::from_chars(first, last, u);
        in_range = uptr == last && uec == std::errc();
        v = static_cast<float>(u);
      }
      if (!in_range) {
        return InvalidArgument(t.path + ".data: value " + std::string(text) + " at " + t.Locate(k) +
                               " is out of range for " + std::string(t.dtype->name));
      }
      t.values.push_back(v);
      return Ok();
    }
    float v = 0;
    if (ParseFloat(text, &v) != FloatParse::kOk) {
      return InvalidArgument(t.path + ".data: value " + std::string(text) + " at " + t.Locate(k) +
                             " is not finite");
    }
    if (dt == DType::kF16 && std::fabs(v) > 65504.0f) {
      return InvalidArgument(t.path + ".data: value " + std::string(text) + " at " + t.Locate(k) +
                             " is out of range for FP16");
    }
    t.values.push_back(v);
    return Ok();
  }

  // "data": flat, or nested exactly as the shape.
  Status Data(JsonReader& r, Tensor& t) {
    if (t.binary_size) return InvalidArgument(t.path + ": has both 'data' and parameters.binary_data_size");
    const std::string path = t.path + ".data";
    const std::vector<uint64_t>& shape = *t.shape;
    const uint64_t want = t.Count();
    TAKT_ASSIGN_OR_RETURN(Type type, r.Peek());
    if (type != Type::kArray)
      return InvalidArgument(path + ": expected an array, found " + std::string(TypeName(type)));
    t.values.clear();
    t.values.reserve(std::min<uint64_t>(want, 1 << 16));
    TAKT_RETURN_IF_ERROR(r.EnterArray());
    size_t outer = 0;
    bool nested = false;
    while (true) {
      TAKT_ASSIGN_OR_RETURN(bool more, r.NextElement());
      if (!more) break;
      TAKT_ASSIGN_OR_RETURN(Type et, r.Peek());
      if (outer == 0) nested = et == Type::kArray;
      if (nested != (et == Type::kArray)) {
        return InvalidArgument(path + ": mixes arrays and values at the top level");
      }
      if (!nested) {
        if (t.values.size() < want) {
          TAKT_RETURN_IF_ERROR(Element(r, t, t.values.size()));
        } else {
          TAKT_RETURN_IF_ERROR(r.Skip());
        }
        ++outer;
        continue;
      }
      // Nested: data[outer] is one row of shape[1] values.
      if (shape.size() != 2) {
        return InvalidArgument(path + ": nested arrays do not match shape " + ShapeText(shape));
      }
      if (outer >= shape[0]) {
        return InvalidArgument(path + ": more than " + N(shape[0]) + " rows for shape " + ShapeText(shape));
      }
      TAKT_RETURN_IF_ERROR(r.EnterArray());
      size_t inner = 0;
      while (true) {
        TAKT_ASSIGN_OR_RETURN(bool more_inner, r.NextElement());
        if (!more_inner) break;
        TAKT_ASSIGN_OR_RETURN(Type it, r.Peek());
        if (it == Type::kArray) {
          return InvalidArgument(path + "[" + N(outer) + "]: nested deeper than shape " + ShapeText(shape));
        }
        if (inner >= shape[1]) {
          return InvalidArgument(path + "[" + N(outer) + "]: more than " + N(shape[1]) +
                                 " values for shape " + ShapeText(shape));
        }
        TAKT_RETURN_IF_ERROR(Element(r, t, t.values.size()));
        ++inner;
      }
      if (inner != shape[1]) {
        return InvalidArgument(path + "[" + N(outer) + "]: expected " + N(shape[1]) + " values for shape " +
                               ShapeText(shape) + ", got " + N(inner));
      }
      ++outer;
    }
    if (nested && outer != shape[0]) {
      return InvalidArgument(path + ": expected " + N(shape[0]) + " rows for shape " + ShapeText(shape) +
                             ", got " + N(outer));
    }
    if (!nested && outer != want) {
      return InvalidArgument(path + ": expected " + N(want) + " values for shape " + ShapeText(shape) +
                             ", got " + N(outer));
    }
    t.parsed = true;
    return Ok();
  }

  // After the header: every input is complete; parse deferred data.
  Status Finalize(const JsonReader& r, Tensor& t) {
    if (!t.has_name) return InvalidArgument(t.path + ": missing 'name'");
    if (!t.dtype) return InvalidArgument(t.path + " ('" + t.name + "'): missing 'datatype'");
    if (!t.shape) return InvalidArgument(t.path + " ('" + t.name + "'): missing 'shape'");
    if (t.has_data && t.binary_size) {
      return InvalidArgument(t.path + ": has both 'data' and parameters.binary_data_size");
    }
    if (!t.has_data && !t.binary_size) return InvalidArgument(t.path + " ('" + t.name + "'): missing 'data'");
    if (t.data_at) {
      JsonReader data = r.At(t.data_at->first, t.data_at->second);
      TAKT_RETURN_IF_ERROR(Data(data, t));
    }
    return Ok();
  }

  Status Binary(std::string_view binary) {
    size_t pos = 0;
    for (Tensor& t : tensors_) {
      if (!t.binary_size) continue;
      if (!options_.json_header_length) {
        return InvalidArgument(
            t.path + ": parameters.binary_data_size needs the Inference-Header-Content-Length header");
      }
      const size_t width = t.dtype->bytes;
      const uint64_t want = t.Count() * width;
      if (*t.binary_size != want) {
        return InvalidArgument(t.path + ": binary_data_size " + N(*t.binary_size) + " does not match shape " +
                               ShapeText(*t.shape) + " of " + std::string(t.dtype->name) + " (" + N(want) +
                               " bytes)");
      }
      if (binary.size() - pos < want) {
        return InvalidArgument("binary tensor data: " + t.path + " needs " + N(want) + " bytes at offset " +
                               N(pos) + ", but the binary part of the body holds only " + N(binary.size()) +
                               " bytes");
      }
      const unsigned char* p = reinterpret_cast<const unsigned char*>(binary.data() + pos);
      const size_t count = static_cast<size_t>(t.Count());
      t.values.resize(count);
      for (size_t k = 0; k < count; ++k, p += width) {
        uint64_t bits = 0;
        for (size_t b = 0; b < width; ++b) bits |= static_cast<uint64_t>(p[b]) << (8 * b);  // little-endian
        float v = 0;
        switch (t.dtype->type) {
          case DType::kBool:
            if (bits > 1) {
              return InvalidArgument(t.path + ": BOOL byte " + N(bits) + " at " + t.Locate(k) +
                                     " is not 0 or 1");
            }
            v = static_cast<float>(bits);
            break;
          case DType::kU8:
          case DType::kU16:
          case DType::kU32:
          case DType::kU64:
            v = static_cast<float>(bits);
            break;
          case DType::kI8:
            v = static_cast<float>(static_cast<int8_t>(bits));
            break;
          case DType::kI16:
            v = static_cast<float>(static_cast<int16_t>(bits));
            break;
          case DType::kI32:
            v = static_cast<float>(static_cast<int32_t>(bits));
            break;
          case DType::kI64:
            v = static_cast<float>(static_cast<int64_t>(bits));
            break;
          case DType::kF16:
            v = HalfToFloat(static_cast<uint16_t>(bits));
            break;
          case DType::kF32:
            v = std::bit_cast<float>(static_cast<uint32_t>(bits));
            break;
          case DType::kF64: {
            double d = std::bit_cast<double>(bits);
            if (std::isfinite(d) && std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max())) {
              v = std::numeric_limits<float>::infinity();
            } else {
              v = static_cast<float>(d);
            }
            break;
          }
        }
        if (std::isinf(v)) {  // NaN is a missing value, as JSON's null
          return InvalidArgument(t.path + ": binary value at " + t.Locate(k) + " is not finite");
        }
        t.values[k] = v;
      }
      pos += want;
      t.parsed = true;
    }
    if (pos != binary.size()) {
      return InvalidArgument("binary tensor data: the body holds " + N(binary.size()) +
                             " bytes after the JSON header, the inputs declare " + N(pos));
    }
    return Ok();
  }

  Status Assemble() {
    const size_t f = features_.size();
    ml::Matrix& m = out_.rows;
    m.cols = f;
    if (tensors_.size() == 1 && !(f == 1 && tensors_[0].name == features_[0])) {
      Tensor& t = tensors_[0];
      const std::vector<uint64_t>& shape = *t.shape;
      const uint64_t rows = shape.size() == 1 ? 1 : shape[0];
      const uint64_t cols = shape.size() == 1 ? shape[0] : shape[1];
      if (cols != f) {
        return InvalidArgument(t.path + " ('" + t.name + "'): shape " + ShapeText(shape) + " has " + N(cols) +
                               " features; the model expects " + N(f));
      }
      if (rows > options_.max_rows) return TooManyRows(t.path, options_.max_rows);
      if (rows == 0) return InvalidArgument(t.path + ": shape " + ShapeText(shape) + " holds no rows");
      m.rows = rows;
      m.values = std::move(t.values);
      return Ok();
    }
    // One input per feature.
    std::vector<const Tensor*> by_feature(f, nullptr);
    std::vector<std::string> unknown;
    for (const Tensor& t : tensors_) {
      size_t idx = f;
      for (size_t i = 0; i < f; ++i) {
        if (features_[i] == t.name) idx = i;
      }
      if (idx == f) {
        unknown.push_back(t.name);
        continue;
      }
      if (by_feature[idx]) return InvalidArgument("input " + Quoted(t.name) + " is given twice");
      by_feature[idx] = &t;
    }
    if (!unknown.empty()) {
      return InvalidArgument(std::string(unknown.size() > 1 ? "inputs " : "input ") + NameList(unknown) +
                             (unknown.size() > 1 ? " are not features" : " is not a feature") +
                             " of this model; send one input [n, " + N(f) +
                             "] or one input per feature, named as the feature");
    }
    std::vector<std::string> missing;
    for (size_t i = 0; i < f; ++i) {
      if (!by_feature[i]) missing.push_back(features_[i]);
    }
    if (!missing.empty()) {
      return InvalidArgument(std::string("missing input") + (missing.size() > 1 ? "s" : "") + " for feature" +
                             (missing.size() > 1 ? "s " : " ") + NameList(missing));
    }
    const Tensor* first = nullptr;
    for (const Tensor& t : tensors_) {
      const std::vector<uint64_t>& shape = *t.shape;
      if (shape.size() == 2 && shape[1] != 1) {
        return InvalidArgument(t.path + " ('" + t.name + "'): shape " + ShapeText(shape) +
                               " must be [n] or [n, 1] for a one-feature input");
      }
      if (!first) {
        first = &t;
      } else if (shape[0] != (*first->shape)[0]) {
        return InvalidArgument(t.path + " ('" + t.name + "'): shape " + ShapeText(shape) + " has " +
                               N(shape[0]) + " rows, " + first->path + " ('" + first->name + "') has " +
                               N((*first->shape)[0]));
      }
    }
    const uint64_t rows = (*first->shape)[0];
    if (rows > options_.max_rows) return TooManyRows(first->path, options_.max_rows);
    if (rows == 0)
      return InvalidArgument(first->path + ": shape " + ShapeText(*first->shape) + " holds no rows");
    m.rows = rows;
    m.values.resize(rows * f);
    for (size_t c = 0; c < f; ++c) {
      const std::vector<float>& col = by_feature[c]->values;
      for (size_t r = 0; r < rows; ++r) m.values[r * f + c] = col[r];
    }
    return Ok();
  }

  const std::vector<std::string>& features_;
  const ParseOptions& options_;
  std::vector<Tensor> tensors_;
  InferenceInput out_;
};

// ---------------------------------------------------------------------------
// Rendering.

void AppendPredictionsJson(std::string& out, PredictionsView p) {
  out += '[';
  for (size_t r = 0; r < p.rows; ++r) {
    if (r) out += ',';
    if (p.cols == 1) {
      AppendJsonFloat(out, p.values[r]);
      continue;
    }
    out += '[';
    for (size_t c = 0; c < p.cols; ++c) {
      if (c) out += ',';
      AppendJsonFloat(out, p.values[r * p.cols + c]);
    }
    out += ']';
  }
  out += ']';
}

void AppendShape(std::string& out, PredictionsView p) {
  out += '[';
  out += N(p.rows);
  if (p.cols != 1) {
    out += ',';
    out += N(p.cols);
  }
  out += ']';
}

}  // namespace

Result<InferenceInput> ParseOipInfer(std::string_view body, const std::vector<std::string>& feature_names,
                                     const ParseOptions& options) {
  OipParser parser(feature_names, options);
  return parser.Parse(body);
}

Result<ml::Matrix> ParseCsvRows(std::string_view body, size_t f, const ParseOptions& options) {
  ml::Matrix m;
  m.cols = f;
  if (body.empty()) return InvalidArgument("csv: the body is empty");
  m.values.reserve(std::min(body.size() / 2 + 1, options.max_rows * f + f));
  const char* p = body.data();
  const char* const end = p + body.size();
  size_t line = 1;
  std::string unquoted;
  auto at = [&](size_t l, size_t col) { return "csv line " + N(l) + ", value " + N(col); };
  while (p < end) {
    // A blank line ("" or "\r") is skipped.
    if (*p == '\n') {
      ++p;
      ++line;
      continue;
    }
    if (*p == '\r' && (p + 1 == end || p[1] == '\n')) {
      p += (p + 1 == end) ? 1 : 2;
      ++line;
      continue;
    }
    if (m.rows >= options.max_rows) return TooManyRows("csv", options.max_rows);
    const size_t row_line = line;
    size_t fields = 0;
    while (true) {
      while (p < end && (*p == ' ' || *p == '\t')) ++p;
      std::string_view field;
      if (p < end && *p == '"') {
        const size_t quote_line = line;
        ++p;
        unquoted.clear();
        while (true) {
          if (p >= end) return InvalidArgument("csv line " + N(quote_line) + ": unterminated quoted field");
          if (*p == '"') {
            if (p + 1 < end && p[1] == '"') {
              unquoted += '"';
              p += 2;
              continue;
            }
            ++p;
            break;
          }
          if (*p == '\n') ++line;
          unquoted += *p++;
        }
        while (p < end && (*p == ' ' || *p == '\t' || (*p == '\r' && (p + 1 == end || p[1] == '\n')))) ++p;
        if (p < end && *p != ',' && *p != '\n') {
          return InvalidArgument(at(row_line, fields + 1) + ": unexpected text after a quoted field");
        }
        field = unquoted;
        while (!field.empty() && (field.front() == ' ' || field.front() == '\t')) field.remove_prefix(1);
        while (!field.empty() && (field.back() == ' ' || field.back() == '\t')) field.remove_suffix(1);
      } else {
        const char* start = p;
        while (p < end && *p != ',' && *p != '\n') ++p;
        field = std::string_view(start, static_cast<size_t>(p - start));
        while (!field.empty() && (field.back() == ' ' || field.back() == '\t' || field.back() == '\r')) {
          field.remove_suffix(1);
        }
      }
      ++fields;
      if (fields <= f) {
        float v = kMissing;  // an empty field: the model's default direction
        if (!field.empty()) {
          FloatParse result = ParseFloat(field, &v);
          if (result == FloatParse::kNotANumber) {
            return InvalidArgument(at(row_line, fields) + ": " + Quoted(field) + " is not a number");
          }
          if (result == FloatParse::kNotFinite) {
            return InvalidArgument(at(row_line, fields) + ": " + Quoted(field) + " is not a finite number");
          }
        }
        m.values.push_back(v);
      }
      if (p < end && *p == ',') {
        ++p;
        continue;
      }
      break;  // end of line or body
    }
    if (p < end) {  // at '\n'
      ++p;
      ++line;
    }
    if (fields != f) {
      return InvalidArgument("csv line " + N(row_line) + ": " + N(fields) + " values; the model expects " +
                             N(f) + " features");
    }
    ++m.rows;
  }
  if (m.rows == 0) return InvalidArgument("csv: the body holds no rows");
  return m;
}

Result<ml::Matrix> ParseJsonInstances(std::string_view body, const std::vector<std::string>& feature_names,
                                      const ParseOptions& options) {
  return ParseJsonRows(body, Features{&feature_names, feature_names.size()}, options);
}

Result<ml::Matrix> ParseJsonInstances(std::string_view body, size_t num_features) {
  return ParseJsonRows(body, Features{nullptr, num_features}, ParseOptions{});
}

Result<InferenceInput> ParseInvocation(std::string_view content_type, std::string_view body,
                                       const std::vector<std::string>& feature_names,
                                       const ParseOptions& options) {
  std::string_view media = MediaType(content_type);
  const bool csv = EqualsIgnoreCase(media, "text/csv");
  const bool json = EqualsIgnoreCase(media, "application/json");
  if (!csv && !json) {
    return UnsupportedMedia("Content-Type '" + std::string(content_type.substr(0, 100)) +
                            "' is not supported: use text/csv or application/json");
  }
  if (body.empty()) return InvalidArgument("the request body is empty");
  InferenceInput in;
  if (csv) {
    TAKT_ASSIGN_OR_RETURN(in.rows, ParseCsvRows(body, feature_names.size(), options));
  } else {
    TAKT_ASSIGN_OR_RETURN(in.rows, ParseJsonInstances(body, feature_names, options));
  }
  return in;
}

std::string RenderJsonPredictions(PredictionsView predictions) {
  std::string out;
  out.reserve(20 + predictions.values.size() * 12);
  out += "{\"predictions\":";
  AppendPredictionsJson(out, predictions);
  out += '}';
  return out;
}

std::string RenderCsvPredictions(PredictionsView predictions) {
  std::string out;
  out.reserve(predictions.values.size() * 12);
  for (size_t r = 0; r < predictions.rows; ++r) {
    for (size_t c = 0; c < predictions.cols; ++c) {
      if (c) out += ',';
      float v = predictions.values[r * predictions.cols + c];
      if (std::isfinite(v)) AppendFloat(out, v);
    }
    out += '\n';
  }
  return out;
}

OipReply RenderOipReply(std::string_view model, int version, const InferenceInput& request,
                        PredictionsView predictions) {
  OipReply reply;
  std::string& out = reply.body;
  out.reserve(128 + predictions.values.size() * (request.binary_output ? 4 : 12));
  out += "{\"model_name\":";
  AppendJsonString(out, model);
  out += ",\"model_version\":\"";
  out += std::to_string(version);
  out += '"';
  if (!request.id.empty()) {
    out += ",\"id\":";
    AppendJsonString(out, request.id);
  }
  out += ",\"outputs\":[{\"name\":\"predict\",\"datatype\":\"FP32\",\"shape\":";
  AppendShape(out, predictions);
  if (request.binary_output) {
    out += ",\"parameters\":{\"binary_data_size\":";
    out += N(predictions.values.size() * 4);
    out += "}}]}";
    reply.json_header_length = out.size();
    for (float v : predictions.values) {
      uint32_t bits = std::bit_cast<uint32_t>(v);
      for (int b = 0; b < 4; ++b) out += static_cast<char>((bits >> (8 * b)) & 0xFF);  // little-endian
    }
    reply.content_type = "application/octet-stream";
    return reply;
  }
  out += ",\"data\":";
  AppendPredictionsJson(out, PredictionsView(predictions.values, predictions.values.size(), 1));
  out += "}]}";
  reply.content_type = "application/json";
  return reply;
}

std::string RenderOipInfer(const std::string& model, int version, const std::string& id,
                           const std::vector<float>& predictions) {
  InferenceInput request;
  request.id = id;
  return RenderOipReply(model, version, request, PredictionsView(predictions)).body;
}

std::string RenderOipMetadata(const std::string& model, int version,
                              const std::vector<std::string>& features) {
  std::string out = "{\"name\":";
  AppendJsonString(out, model);
  out += ",\"versions\":[\"" + std::to_string(version) + "\"],\"platform\":\"xgboost\",";
  out +=
      "\"inputs\":[{\"name\":\"input-0\",\"datatype\":\"FP32\",\"shape\":[-1," + N(features.size()) + "]}],";
  out += "\"outputs\":[{\"name\":\"predict\",\"datatype\":\"FP32\",\"shape\":[-1]}],";
  out += "\"parameters\":{\"feature_names\":[";
  for (size_t i = 0; i < features.size(); ++i) {
    if (i) out += ',';
    AppendJsonString(out, features[i]);
  }
  out += "]}}";
  return out;
}

}  // namespace takt::serving
