// File: fuzz/protocols_fuzz.cc
//
// libFuzzer target for the inference request parsers (serving/protocols.h,
// serving/json_reader.h). The first byte picks the parser; the rest is the
// body. Invariants: no crash, no sanitizer report, and on success a matrix of
// rows x 32 values with rows <= the row limit; renderers accept any matrix.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "serving/json_reader.h"
#include "serving/protocols.h"

namespace {

using takt::serving::ParseOptions;

const std::vector<std::string>& Features() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (int i = 0; i < 32; ++i) v.push_back("f" + std::to_string(i));
    return v;
  }();
  return names;
}

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckMatrix(const takt::ml::Matrix& m, const ParseOptions& options) {
  Check(m.cols == Features().size());
  Check(m.rows >= 1 && m.rows <= options.max_rows);
  Check(m.rows * m.cols == m.values.size());
  // The renderers take any matrix.
  takt::serving::PredictionsView view(m.values, m.rows, m.cols);
  Check(!takt::serving::RenderJsonPredictions(view).empty());
  Check(!takt::serving::RenderCsvPredictions(view).empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  ParseOptions options;
  options.max_rows = 1000;
  switch (selector % 6) {
    case 0: {  // OIP JSON
      auto r = takt::serving::ParseOipInfer(body, Features(), options);
      if (r) {
        CheckMatrix(r->rows, options);
        takt::serving::PredictionsView view(r->rows.values, r->rows.rows, r->rows.cols);
        auto reply = takt::serving::RenderOipReply("m", 1, *r, view);
        Check(!reply.json_header_length || *reply.json_header_length <= reply.body.size());
      }
      break;
    }
    case 1: {  // OIP binary: two bytes of header length, then the body
      if (body.size() < 2) return 0;
      options.json_header_length =
          static_cast<uint8_t>(body[0]) | (static_cast<size_t>(static_cast<uint8_t>(body[1])) << 8);
      body.remove_prefix(2);
      auto r = takt::serving::ParseOipInfer(body, Features(), options);
      if (r) CheckMatrix(r->rows, options);
      break;
    }
    case 2: {  // SageMaker CSV
      auto r = takt::serving::ParseCsvRows(body, Features().size(), options);
      if (r) CheckMatrix(*r, options);
      break;
    }
    case 3: {  // SageMaker / MLflow JSON
      auto r = takt::serving::ParseJsonInstances(body, Features(), options);
      if (r) CheckMatrix(*r, options);
      break;
    }
    case 4: {  // positional JSON only (the former signature)
      auto r = takt::serving::ParseJsonInstances(body, Features().size());
      if (r) Check(r->rows * r->cols == r->values.size());
      break;
    }
    case 5: {  // the JSON reader alone
      takt::serving::JsonReader reader(body);
      if (reader.Skip() && reader.Finish()) Check(reader.offset() == body.size());
      break;
    }
  }
  return 0;
}
