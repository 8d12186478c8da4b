// Inference request parsing: ns and heap allocations per parse of a one-row,
// 32-feature request in each wire format (serving/protocols.h), next to
// nlohmann::json::parse of the same body (a DOM only, no extraction) in the
// same run. Medians of --repeat batches; results to --out (Markdown) and stdout.
//
//   build/bench/takt_protocols_bench --repeat 15 --out bench/results/protocols.md
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "serving/protocols.h"

// Counts heap allocations (for "allocations per parse"). GCC flags the free() in
// the replaced operator delete wherever it inlines it; the pair is consistent.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_allocations{0};
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace takt;
using Steady = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Measure {
  double ns = 0;
  double allocs = 0;
};

// Median ns per call over `repeat` batches of `iters` calls.
Measure Time(int repeat, int iters, const std::function<bool()>& fn) {
  for (int i = 0; i < iters / 10; ++i) {
    if (!fn()) {
      std::cerr << "parse failed\n";
      std::exit(1);
    }
  }
  std::vector<double> ns;
  long allocs_before = g_allocations.load();
  for (int r = 0; r < repeat; ++r) {
    auto t0 = Steady::now();
    for (int i = 0; i < iters; ++i) {
      if (!fn()) std::exit(1);
    }
    ns.push_back(std::chrono::duration<double, std::nano>(Steady::now() - t0).count() / iters);
  }
  Measure m;
  m.ns = Median(ns);
  m.allocs =
      static_cast<double>(g_allocations.load() - allocs_before) / (static_cast<double>(repeat) * iters);
  return m;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 15;
  int iters = 20000;
  std::string out = "bench/results/protocols.md";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--repeat") repeat = std::atoi(argv[i + 1]);
    if (a == "--iters") iters = std::atoi(argv[i + 1]);
    if (a == "--out") out = argv[i + 1];
  }

  std::vector<std::string> features;
  std::vector<float> row;
  for (int i = 0; i < 32; ++i) {
    features.push_back("sensor_" + std::to_string(i));
    row.push_back(static_cast<float>(i) * 1.37f - 11.5f);
  }
  std::string values, named, columns;
  for (size_t i = 0; i < row.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", row[i]);
    if (i) {
      values += ',';
      named += ',';
      columns += ',';
    }
    values += buf;
    named += "\"" + features[i] + "\":" + buf;
    columns += "\"" + features[i] + "\"";
  }
  const std::string oip =
      R"({"id":"req-1","inputs":[{"name":"input-0","shape":[1,32],"datatype":"FP32","data":[)" + values +
      "]}]}";
  const std::string header =
      R"({"id":"req-1","inputs":[{"name":"input-0","shape":[1,32],"datatype":"FP32","parameters":{"binary_data_size":128}}]})";
  std::string binary = header;
  binary.append(reinterpret_cast<const char*>(row.data()), row.size() * sizeof(float));
  const std::string csv = values + "\n";
  const std::string instances = "{\"instances\":[[" + values + "]]}";
  const std::string split =
      "{\"dataframe_split\":{\"columns\":[" + columns + "],\"data\":[[" + values + "]]}}";
  const std::string records = "{\"dataframe_records\":[{" + named + "}]}";

  serving::ParseOptions binary_options;
  binary_options.json_header_length = header.size();

  struct Case {
    std::string name;
    const std::string* body;
    std::function<bool()> takt;
    bool json;
  };
  std::vector<Case> cases = {
      {"OIP v2 JSON", &oip, [&] { return serving::ParseOipInfer(oip, features).has_value(); }, true},
      {"OIP v2 binary tensor", &binary,
       [&] { return serving::ParseOipInfer(binary, features, binary_options).has_value(); }, false},
      {"SageMaker text/csv", &csv, [&] { return serving::ParseCsvRows(csv, 32).has_value(); }, false},
      {"SageMaker {\"instances\"}", &instances,
       [&] { return serving::ParseJsonInstances(instances, features).has_value(); }, true},
      {"MLflow dataframe_split", &split,
       [&] { return serving::ParseJsonInstances(split, features).has_value(); }, true},
      {"MLflow dataframe_records", &records,
       [&] { return serving::ParseJsonInstances(records, features).has_value(); }, true},
  };

  std::ostringstream md;
  md << "# Inference request parsing (one row, 32 features)\n\n"
     << "`build/bench/takt_protocols_bench --repeat " << repeat << "` — median of " << repeat
     << " batches of " << iters
     << " parses, RelWithDebInfo (GCC 12 -O2), one thread on a shared 2-core machine. "
     << "takt: serving/protocols.h (pull scanner, numbers straight into the matrix). Peer: "
     << "`nlohmann::json::parse` of the same body, building the DOM only (no extraction, no checks).\n\n"
     << "| format | body bytes | takt ns/parse | takt allocs/parse | nlohmann::json::parse ns | ratio |\n"
     << "|---|---:|---:|---:|---:|---:|\n";
  for (const Case& c : cases) {
    Measure t = Time(repeat, iters, c.takt);
    std::string peer = "—", ratio = "—";
    if (c.json) {
      const std::string& body = *c.body;
      Measure n = Time(repeat, iters, [&] { return !nlohmann::json::parse(body).is_null(); });
      peer = Fixed(n.ns, 0);
      ratio = Fixed(n.ns / t.ns, 1) + "x";
    }
    md << "| " << c.name << " | " << c.body->size() << " | " << Fixed(t.ns, 0) << " | " << Fixed(t.allocs, 1)
       << " | " << peer << " | " << ratio << " |\n";
  }
  std::vector<float> one = {0.25f};
  Measure render = Time(repeat, iters, [&] { return !serving::RenderJsonPredictions(one).empty(); });
  serving::InferenceInput request;
  request.id = "req-1";
  Measure render_oip =
      Time(repeat, iters, [&] { return !serving::RenderOipReply("weld-pm", 3, request, one).body.empty(); });
  md << "\nRendering one prediction: `{\"predictions\":[...]}` " << Fixed(render.ns, 0) << " ns ("
     << Fixed(render.allocs, 1) << " allocs), OIP JSON reply " << Fixed(render_oip.ns, 0) << " ns ("
     << Fixed(render_oip.allocs, 1) << " allocs).\n";

  std::ifstream loadavg("/proc/loadavg");
  std::string load;
  std::getline(loadavg, load);
  md << "\nLoad average during the run (/proc/loadavg): `" << load
     << "` — the machine is shared, so absolute times are inflated; compare the ratios.\n";
  std::cout << md.str();
  std::ofstream f(out);
  f << md.str();
  return 0;
}
