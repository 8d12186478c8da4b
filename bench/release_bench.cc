// Approval → serving in dev: the time from a version's approval in the
// registry (the outbox event written in the same transaction) until endpoint
// weld-pm-dev answers with that version, through the real event bus, the
// release worker (quality gate, deploy, smoke test of 20 requests) and the
// serving swap; all threads as the server runs them. The peer, measured in
// the same run on the same model: a bare ServingService::Deploy of that
// version (load, commit, swap) with nothing around it.
// Medians of --repeat approvals; results to --out (Markdown) and stdout.
//
//   build/bench/takt_release_bench --repeat 20 --out bench/results/release.md
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "blob/blob_store.h"
#include "core/json.h"
#include "core/temp_dir.h"
#include "crypto/keyring.h"
#include "events/events.h"
#include "iam/iam.h"
#include "ml/xgboost_model.h"
#include "registry/registry.h"
#include "release/release.h"
#include "serving/serving.h"
#include "store/database.h"

namespace {

using namespace takt;
using Steady = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void Die(const std::string& what, const Error& e) {
  std::cerr << what << ": " << e.ToString() << "\n";
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 20;
  std::string out = "bench/results/release.md";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--repeat") repeat = std::atoi(argv[i + 1]);
    if (a == "--out") out = argv[i + 1];
  }
  spdlog::set_level(spdlog::level::warn);
  TempDir dir;
  auto keyring = crypto::Keyring::FromBytesForTest(std::string(32, 'b'));
  auto blobs = blob::BlobStore::Open(dir.path() / "blobs", &keyring);
  if (!blobs) Die("blobs", blobs.error());
  auto db = store::OpenSqlite((dir.path() / "takt.db").string());
  if (!db) Die("db", db.error());
  iam::IamService iam(db->get());
  events::EventBus bus(db->get());
  registry::RegistryService registry(db->get());
  serving::ServingService serving(db->get(), blobs->get(), &registry);
  release::ReleaseService releases(db->get(), &registry, &serving, &iam);
  for (auto s : {iam.Migrate(), bus.Migrate(), registry.Migrate(), serving.Migrate(), releases.Migrate()}) {
    if (!s) Die("migrate", s.error());
  }
  // The release target on whatever rule the bus seeds for approvals; one of our own too.
  bus.RegisterTarget("release",
                     [&](const events::Event& e, const events::Rule&) { return releases.OnEvent(e); });
  bus.RegisterTarget("deploy",
                     [&](const events::Event& e, const events::Rule&) { return releases.OnEvent(e); });

  // 100 trees of depth 6 over 32 features: a plausible weld-pm model.
  ml::Matrix x;
  x.rows = 4000;
  x.cols = 32;
  uint64_t s = 9;
  std::vector<float> y;
  for (size_t r = 0; r < x.rows; ++r) {
    float sum = 0;
    for (size_t c = 0; c < x.cols; ++c) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      float v = static_cast<float>((s >> 40) & 0xFFFF) / 65536.0f;
      x.values.push_back(v);
      if (c < 4) sum += v;
    }
    y.push_back(sum > 2 ? 1.0f : 0.0f);
  }
  ml::TrainOptions opts;
  opts.params = {{"objective", "binary:logistic"}, {"tree_method", "hist"}, {"max_depth", "6"}};
  opts.num_rounds = 100;
  auto trained = ml::Train(x, y, nullptr, nullptr, opts);
  if (!trained) Die("train", trained.error());
  std::vector<std::string> features;
  for (int c = 0; c < 32; ++c) features.push_back("f" + std::to_string(c));
  auto blob_id = (*blobs)->Put(trained->model_json);
  if (!blob_id) Die("blob", blob_id.error());

  bus.Start();
  releases.Start();
  std::vector<double> released, bare;
  for (int i = 0; i < repeat; ++i) {
    int version = 0;
    auto reg = (*db)->Transaction([&](store::Database& tx) -> Status {
      registry::ModelVersion v;
      v.group = "weld-pm";
      v.blob_id = *blob_id;
      v.feature_names = features;
      v.metrics_json = Json{{"auc", 0.9}}.dump();
      v.created_by = "sam";
      TAKT_ASSIGN_OR_RETURN(auto r, registry.Register(tx, v, "weld-pm"));
      version = r.version;
      return Ok();
    });
    if (!reg) Die("register", reg.error());
    auto t0 = Steady::now();
    auto ok = registry.Approve("weld-pm", version, "ada", "bench");
    if (!ok) Die("approve", ok.error());
    bus.Notify();
    while (true) {
      auto m = serving.Find("weld-pm-dev");
      if (m && (*m)->version == version) break;
      if (Steady::now() - t0 > std::chrono::seconds(30)) {
        std::cerr << "version " << version << " did not reach dev in 30 s\n";
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    released.push_back(std::chrono::duration<double, std::milli>(Steady::now() - t0).count());
    // The peer: the same version deployed bare to another endpoint.
    auto t1 = Steady::now();
    auto d = serving.Deploy("weld-pm", version, "prod", "bench-" + std::to_string(i));
    if (!d) Die("bare deploy", d.error());
    bare.push_back(std::chrono::duration<double, std::milli>(Steady::now() - t1).count());
  }
  releases.Stop();
  bus.Stop();

  char buf[2048];
  std::snprintf(
      buf, sizeof buf,
      "# Approval → dev endpoint serving\n\n"
      "Median of %d approvals, 100-tree depth-6 model over 32 features, on this machine (%u cores).\n\n"
      "| measure | median ms | min ms | max ms |\n|---|---|---|---|\n"
      "| approval → weld-pm-dev serves it (outbox, bus, release: quality gate, deploy, 20-request smoke "
      "test, swap) | %.1f | %.1f | %.1f |\n"
      "| peer: bare `ServingService::Deploy` of the same version (load, commit, swap) | %.1f | %.1f | "
      "%.1f |\n\n"
      "Release path / bare deploy: %.1f×. Run: `build/bench/takt_release_bench --repeat %d`.\n",
      repeat, std::thread::hardware_concurrency(), Median(released),
      *std::min_element(released.begin(), released.end()),
      *std::max_element(released.begin(), released.end()), Median(bare),
      *std::min_element(bare.begin(), bare.end()), *std::max_element(bare.begin(), bare.end()),
      Median(released) / std::max(Median(bare), 1e-9), repeat);
  std::cout << buf;
  std::ofstream(out) << buf;
  return 0;
}
