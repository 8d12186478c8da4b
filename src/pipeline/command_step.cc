// The command step: any executable (a data scientist's train.py) in a
// bubblewrap sandbox, with the SageMaker script-mode contract, so a script
// written for SageMaker training runs unchanged:
//
//   /opt/ml/code                  the step's code (read-only, the working directory)
//   /opt/ml/input/data/<channel>  one folder per input (read-only): tables as <channel>.csv,
//                                 models as model.json, files as they were written
//   /opt/ml/input/config/hyperparameters.json
//   /opt/ml/model                 writable: the model it saves (e.g. xgboost-model)
//   /opt/ml/output/data           writable: other outputs; metrics.json
//
// Environment: TAKT_INPUT_<NAME> (the input's file or folder), TAKT_OUTPUT_DIR,
// TAKT_MODEL_DIR, TAKT_HYPERPARAMETERS (JSON), and SM_CHANNEL_<NAME>,
// SM_CHANNELS, SM_MODEL_DIR, SM_OUTPUT_DATA_DIR, SM_OUTPUT_DIR, SM_INPUT_DIR,
// SM_INPUT_CONFIG_DIR, SM_HPS, SM_HP_<NAME>, SM_HOSTS, SM_CURRENT_HOST,
// SM_NUM_CPUS, SM_NUM_GPUS; hyperparameters also as `--name value` arguments.
//
// Afterwards: a model in the model folder is recognised by content (XGBoost
// JSON or UBJSON; XGBoost's binary format is converted to JSON by XGBoost
// itself, inside the sandbox), checked, and becomes the `model` output;
// metrics come from metrics.json and from `metrics.regex` over stdout (a
// pattern matching several times makes a curve).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include "frame/codec.h"
#include "frame/csv.h"
#include "ml/xgboost_model.h"
#include "pipeline/slurm_step.h"
#include "pipeline/steps.h"
#include "sandbox/sandbox.h"

namespace takt::pipeline {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kDefaultDiskQuota = int64_t{10} << 30;

std::string Upper(std::string s) {
  for (char& c : s) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

Status WriteFile(const fs::path& path, std::string_view content) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) return Internal("cannot write " + path.string());
  return Ok();
}

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string ScalarText(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Every file under `dir` as a manifest {relative path: blob id}, stored as a blob.
Result<std::string> StoreTree(blob::BlobStore& blobs, const fs::path& dir) {
  Json manifest = Json::object();
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    TAKT_ASSIGN_OR_RETURN(std::string content, ReadFile(it->path()));
    TAKT_ASSIGN_OR_RETURN(manifest[fs::relative(it->path(), dir).string()], blobs.Put(content));
  }
  return blobs.Put(manifest.dump());
}

Status RestoreTree(blob::BlobStore& blobs, const std::string& manifest_id, const fs::path& dir) {
  TAKT_ASSIGN_OR_RETURN(std::string text, blobs.Get(manifest_id));
  Json manifest = Json::parse(text, nullptr, false);
  if (!manifest.is_object()) return Internal("files artifact " + manifest_id + " is not a manifest");
  for (const auto& [path, id] : manifest.items()) {
    if (path.find("..") != std::string::npos || path.starts_with("/")) continue;
    TAKT_ASSIGN_OR_RETURN(std::string content, blobs.Get(id.get<std::string>()));
    TAKT_RETURN_IF_ERROR(WriteFile(dir / path, content));
  }
  return Ok();
}

enum class ModelFormat { kJson, kUbjson, kBinary, kUnknown };

// What a model file is, from its bytes.
ModelFormat SniffModel(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[i]))) ++i;
  if (i < bytes.size() && bytes[i] == '{') {
    Json j = Json::parse(bytes, nullptr, false);
    if (j.is_object() && j.contains("learner")) return ModelFormat::kJson;
    // UBJSON objects also start with '{', followed by a length marker.
    try {
      Json u = Json::from_ubjson(bytes);
      if (u.is_object() && u.contains("learner")) return ModelFormat::kUbjson;
    } catch (const std::exception&) {
    }
    return ModelFormat::kUnknown;
  }
  // XGBoost's binary format: "binf" (from 1.0) or the older header, a
  // LearnerModelParam of 136 bytes followed by the objective name.
  if (bytes.starts_with("binf")) return ModelFormat::kBinary;
  if (bytes.size() > 140 && bytes.find("binary:") != std::string_view::npos) return ModelFormat::kBinary;
  if (bytes.size() > 140 && bytes.find("reg:") != std::string_view::npos) return ModelFormat::kBinary;
  return ModelFormat::kUnknown;
}

// The model file in the model folder: the conventional names first, else the only file.
std::optional<fs::path> FindModelFile(const fs::path& dir) {
  for (const char* name : {"xgboost-model", "xgboost-model.json", "xgboost-model.ubj", "model.json",
                           "model.ubj", "model.bin", "model.xgb"}) {
    if (fs::is_regular_file(dir / name)) return dir / name;
  }
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  if (files.size() == 1) return files.front();
  return std::nullopt;
}

// Numbers of a metrics.json: {"auc": 0.93, "validation_logloss": [0.6, 0.5, ...]}.
void ReadMetricsFile(const fs::path& path, StepEnv& env, StepResult& r) {
  auto text = ReadFile(path);
  if (!text) return;
  Json j = Json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    env.log("warning: " + path.filename().string() + " is not a JSON object of metrics; ignored");
    return;
  }
  for (const auto& [name, v] : j.items()) {
    if (v.is_number()) {
      r.metrics[name] = v.get<double>();
    } else if (v.is_array() && !v.empty()) {
      int round = 0;
      double last = 0;
      for (const auto& p : v) {
        if (!p.is_number()) continue;
        last = p.get<double>();
        env.curve(name, round++, last);
      }
      if (round > 0) r.metrics[name] = last;
    }
  }
}

}  // namespace

Result<StepResult> RunCommand(StepEnv& env) {
  const StepSpec& step = *env.step;
  const bool on_slurm = step.executor == "slurm";
  // After a restart, the Slurm job of this attempt may still run in the folder prepared for it.
  const bool reattach = on_slurm && !env.slurm_job.empty();
  if (!on_slurm) {
    if (auto ok = sandbox::Available(); !ok) return std::unexpected(ok.error().WithContext("command step"));
  }
  const Json& config = step.config;
  const fs::path root = env.work_dir;
  std::error_code ec;
  if (!reattach) fs::remove_all(root, ec);
  const fs::path code = root / "code", input = root / "input", model = root / "model",
                 output = root / "output";
  for (const auto& d : {code, input / "data", input / "config", model, output / "data"}) {
    fs::create_directories(d, ec);
    if (ec) return Internal("cannot create " + d.string() + ": " + ec.message());
  }
  // The code bundle: a file lands in /opt/ml/code under its own name; a folder's files keep their relative
  // paths.
  if (config.contains("code") && !reattach) {
    std::string prefix = config["code"];
    while (prefix.ends_with("/")) prefix.pop_back();
    for (const auto& [path, content] : *env.files) {
      if (path == prefix) {
        TAKT_RETURN_IF_ERROR(WriteFile(code / fs::path(path).filename(), content));
      } else if (path.starts_with(prefix + "/")) {
        TAKT_RETURN_IF_ERROR(WriteFile(code / path.substr(prefix.size() + 1), content));
      }
    }
  }
  std::map<std::string, std::string> vars = {
      {"HOME", "/tmp"},
      {"LANG", "C.UTF-8"},
      {"PYTHONUNBUFFERED", "1"},
      {"PATH", "/usr/local/bin:/usr/bin:/bin"},
      {"TAKT_RUN_ID", env.run->id},
      {"TAKT_STEP", step.name},
      {"TAKT_ATTEMPT", std::to_string(env.attempt)},
      {"TAKT_OUTPUT_DIR", "/opt/ml/output/data"},
      {"TAKT_MODEL_DIR", "/opt/ml/model"},
      {"SM_MODEL_DIR", "/opt/ml/model"},
      {"SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"},
      {"SM_OUTPUT_DIR", "/opt/ml/output"},
      {"SM_INPUT_DIR", "/opt/ml/input"},
      {"SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"},
      {"SM_HOSTS", "[\"algo-1\"]"},
      {"SM_CURRENT_HOST", "algo-1"},
      {"SM_NUM_CPUS", std::to_string(step.resources.cpus)},
      {"SM_NUM_GPUS", "0"},
      {"SM_MODULE_DIR", "/opt/ml/code"},
  };
  // Inputs, one channel each.
  Json channels = Json::array();
  for (const auto& in : step.inputs) {
    const std::string channel = in.name.starts_with("inputs.") ? in.name.substr(7) : in.name;
    const fs::path dir = input / "data" / channel;
    fs::create_directories(dir, ec);
    const Json& value = InputValue(env, in);
    std::string inside = "/opt/ml/input/data/" + channel;
    const bool write = !reattach;  // a reattached job's inputs are already in place
    switch (in.type) {
      case ArtifactType::kTable: {
        if (write) {
          TAKT_ASSIGN_OR_RETURN(std::string bytes, env.blobs->Get(value.get<std::string>()));
          TAKT_ASSIGN_OR_RETURN(frame::Table t, frame::DecodeTable(bytes));
          TAKT_RETURN_IF_ERROR(WriteFile(dir / (channel + ".csv"), frame::WriteCsv(t)));
        }
        vars["TAKT_INPUT_" + Upper(channel)] = inside + "/" + channel + ".csv";
        break;
      }
      case ArtifactType::kModel: {
        if (write) {
          TAKT_ASSIGN_OR_RETURN(std::string bytes, env.blobs->Get(value.get<std::string>()));
          TAKT_RETURN_IF_ERROR(WriteFile(dir / "model.json", bytes));
        }
        vars["TAKT_INPUT_" + Upper(channel)] = inside + "/model.json";
        break;
      }
      case ArtifactType::kMetrics:
        if (write) TAKT_RETURN_IF_ERROR(WriteFile(dir / "metrics.json", value.dump()));
        vars["TAKT_INPUT_" + Upper(channel)] = inside + "/metrics.json";
        break;
      case ArtifactType::kFiles:
        if (write) TAKT_RETURN_IF_ERROR(RestoreTree(*env.blobs, value.get<std::string>(), dir));
        vars["TAKT_INPUT_" + Upper(channel)] = inside;
        break;
    }
    vars["SM_CHANNEL_" + Upper(channel)] = inside;
    channels.push_back(channel);
  }
  vars["SM_CHANNELS"] = channels.dump();
  // Hyperparameters: SageMaker hands them over as strings.
  Json hps = Json::object();
  std::vector<std::string> argv = config["command"].get<std::vector<std::string>>();
  if (config.contains("hyperparameters")) {
    for (const auto& [k, v] : config["hyperparameters"].items()) {
      hps[k] = ScalarText(v);
      vars["SM_HP_" + Upper(k)] = ScalarText(v);
      argv.push_back("--" + k);
      argv.push_back(ScalarText(v));
    }
  }
  vars["SM_HPS"] = config.value("hyperparameters", Json::object()).dump();
  vars["TAKT_HYPERPARAMETERS"] = vars["SM_HPS"];
  if (!reattach) TAKT_RETURN_IF_ERROR(WriteFile(input / "config" / "hyperparameters.json", hps.dump()));

  sandbox::Spec spec;
  spec.argv = argv;
  spec.env = vars;
  spec.read_only = {{code.string(), "/opt/ml/code"}, {input.string(), "/opt/ml/input"}};
  spec.writable = {{model.string(), "/opt/ml/model"}, {output.string(), "/opt/ml/output"}};
  spec.cwd = "/opt/ml/code";
  spec.network = step.network;
  spec.limits.wall_seconds = step.timeout_seconds;
  spec.limits.memory_bytes = step.resources.memory_bytes;
  spec.limits.disk_bytes = step.resources.disk_bytes > 0 ? step.resources.disk_bytes : kDefaultDiskQuota;
  spec.limits.cpus = step.resources.cpus;

  // Regex metrics over stdout; the tail of stderr for the error message.
  std::vector<std::pair<std::string, std::regex>> patterns;
  if (config.contains("metrics") && config["metrics"].contains("regex")) {
    for (const auto& [name, pattern] : config["metrics"]["regex"].items()) {
      try {
        patterns.emplace_back(name, std::regex(pattern.get<std::string>()));
      } catch (const std::regex_error& e) {
        return InvalidArgument("step " + step.name + ": metrics.regex." + name +
                               " is not a valid pattern: " + e.what());
      }
    }
  }
  std::map<std::string, int> rounds;
  StepResult r;
  std::vector<std::string> tail;
  auto on_line = [&](std::string_view stream, std::string_view line) {
    env.log(std::string(stream == "stderr" ? "! " : "") + std::string(line));
    if (stream == "stderr") {
      tail.emplace_back(line);
      if (tail.size() > 5) tail.erase(tail.begin());
    }
    for (const auto& [name, re] : patterns) {
      std::match_results<std::string_view::const_iterator> m;
      if (std::regex_search(line.begin(), line.end(), m, re) && m.size() > 1) {
        try {
          const double v = std::stod(m[1].str());
          env.curve(name, rounds[name]++, v);
          r.metrics[name] = v;
        } catch (const std::exception&) {
        }
      }
    }
  };
  std::string shown;
  for (const auto& w : config["command"]) shown += (shown.empty() ? "" : " ") + w.get<std::string>();
  if (!reattach) {
    env.log("$ " + shown + (hps.empty() ? "" : " (+ " + std::to_string(hps.size()) + " hyperparameters)") +
            " in a sandbox" + (step.network ? " with network" : ", no network") +
            (on_slurm ? ", on Slurm" : ""));
  }
  Result<sandbox::RunResult> result = Internal("not run");
  if (on_slurm) {
    result = RunSandboxOnSlurm(env, spec, root / "job", on_line);
  } else {
    // Turns a cancellation of the run into the sandbox's cancel flag; woken at once when the step ends.
    std::atomic<bool> cancel{false};
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    std::thread watcher([&] {
      std::unique_lock lock(mu);
      while (!finished) {
        if (env.should_stop() && env.stop_reason() == "cancelled") cancel = true;
        cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return finished; });
      }
    });
    result = sandbox::Run(spec, on_line, &cancel);
    {
      std::lock_guard lock(mu);
      finished = true;
    }
    cv.notify_one();
    watcher.join();
  }
  TAKT_RETURN_IF_ERROR(result);
  if (!result->ok()) {
    switch (result->outcome) {
      case sandbox::Outcome::kTimedOut:
      case sandbox::Outcome::kCpuLimit:
        env.failure = "timeout";
        break;
      case sandbox::Outcome::kSignaled:
        env.failure = "crash";
        break;
      case sandbox::Outcome::kMemoryLimit:
        env.failure = "memory";
        break;
      case sandbox::Outcome::kDiskQuota:
        env.failure = "disk";
        break;
      case sandbox::Outcome::kCancelled:
        env.failure = "cancelled";
        break;
      default:
        env.failure = "error";
    }
    std::string last;
    for (const auto& l : tail) last += (last.empty() ? "" : " | ") + l;
    return MakeError(Code::kFailedPrecondition, "`" + shown + "` " + result->reason +
                                                    (last.empty() ? "" : "; stderr ended with: " + last));
  }
  env.log("finished in " + std::to_string(static_cast<int>(result->wall_seconds * 1000)) + " ms, max RSS " +
          std::to_string(result->max_rss_bytes >> 20) + " MiB" +
          (result->binary_lines > 0
               ? ", " + std::to_string(result->binary_lines) + " lines of binary output hidden"
               : ""));

  // Metrics from a file.
  const std::string metrics_file = config.contains("metrics")
                                       ? config["metrics"].value("file", std::string("metrics.json"))
                                       : "metrics.json";
  for (const fs::path& p : {output / "data" / metrics_file, model / metrics_file, output / metrics_file}) {
    if (fs::is_regular_file(p)) {
      ReadMetricsFile(p, env, r);
      break;
    }
  }

  // The model, recognised by its content.
  bool model_needed = false;
  for (const auto& s : env.spec->steps) {
    for (const auto& in : s.inputs) model_needed |= in.step == step.name && in.output == "model";
  }
  if (auto file = FindModelFile(model)) {
    TAKT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(*file));
    ModelFormat format = SniffModel(bytes);
    if (format == ModelFormat::kBinary) {
      // Converted by XGBoost itself, in the same sandbox: the bytes are the script's, not trusted here.
      env.log("model " + file->filename().string() + " is in XGBoost's binary format; converting it to JSON");
      sandbox::Spec convert = spec;
      const std::string inside = "/opt/ml/model/" + file->filename().string();
      convert.argv = {"/usr/bin/python3", "-c",
                      "import sys, xgboost; b = xgboost.Booster(); b.load_model(sys.argv[1]); "
                      "b.save_model('/opt/ml/output/converted-model.json')",
                      inside};
      convert.network = false;
      auto converted = sandbox::Run(
          convert, [&](std::string_view, std::string_view line) { env.log("! " + std::string(line)); });
      TAKT_RETURN_IF_ERROR(converted);
      if (!converted->ok())
        return InvalidArgument("the model in the model folder could not be read by XGBoost: " +
                               converted->reason);
      TAKT_ASSIGN_OR_RETURN(bytes, ReadFile(output / "converted-model.json"));
      fs::remove(output / "converted-model.json", ec);
      format = ModelFormat::kJson;
    } else if (format == ModelFormat::kUbjson) {
      bytes = Json::from_ubjson(bytes).dump();
      format = ModelFormat::kJson;
    }
    if (format != ModelFormat::kJson) {
      return InvalidArgument("step " + step.name + " wrote " + file->filename().string() +
                             " to the model folder, but it is not an XGBoost model (JSON, UBJSON or binary)");
    }
    TAKT_ASSIGN_OR_RETURN(auto loaded, ml::XgbModel::Load(bytes));
    TAKT_ASSIGN_OR_RETURN(r.outputs["model"], env.blobs->Put(bytes));
    r.outputs["framework"] = "xgboost";
    Json j = Json::parse(bytes, nullptr, false);
    std::vector<std::string> names;
    if (j.contains("learner") && j["learner"].contains("feature_names") &&
        j["learner"]["feature_names"].is_array()) {
      names = j["learner"]["feature_names"].get<std::vector<std::string>>();
    }
    r.outputs["feature_names"] = names;
    env.log("model: " + file->filename().string() + " (XGBoost, " + std::to_string(loaded->num_features()) +
            " features" + (names.empty() ? ", unnamed" : "") + ")");
    // Facts of the data it was trained on, for lineage and registration.
    for (const auto& in : step.inputs) {
      const StepResult& from = InputStep(env, in);
      for (const char* k : {"dataset", "dataset_version", "label"}) {
        if (from.outputs.contains(k) && !r.outputs.contains(k)) r.outputs[k] = from.outputs[k];
      }
    }
    if (hps.contains("label") && !r.outputs.contains("label")) r.outputs["label"] = hps["label"];
    r.outputs["params"] = hps;
  } else if (model_needed) {
    return FailedPrecondition(
        "step " + step.name +
        " wrote no model: save it into $SM_MODEL_DIR (or $TAKT_MODEL_DIR), e.g. as xgboost-model");
  }

  // Declared outputs, then the output folder as a whole.
  if (config.contains("outputs")) {
    for (const auto& [name, type] : config["outputs"].items()) {
      if (type == "table") {
        const fs::path csv = output / "data" / (name + ".csv");
        auto text = ReadFile(csv);
        if (!text) {
          return FailedPrecondition("step " + step.name + " declares the table output '" + name +
                                    "' but wrote no " + name + ".csv into $TAKT_OUTPUT_DIR");
        }
        auto t = frame::ReadCsv(*text);
        if (!t)
          return std::unexpected(t.error().WithContext("step " + step.name + ": output " + name + ".csv"));
        TAKT_ASSIGN_OR_RETURN(r.outputs[name], env.blobs->Put(frame::EncodeTable(*t)));
      } else {
        const fs::path dir = output / "data" / name;
        if (!fs::is_directory(dir)) {
          return FailedPrecondition("step " + step.name + " declares the files output '" + name +
                                    "' but wrote no folder " + name + " into $TAKT_OUTPUT_DIR");
        }
        TAKT_ASSIGN_OR_RETURN(r.outputs[name], StoreTree(*env.blobs, dir));
      }
    }
  }
  TAKT_ASSIGN_OR_RETURN(r.outputs["output"], StoreTree(*env.blobs, output / "data"));
  if (env.discard) {
    env.discard(root.string());  // the outputs are blobs now
  } else {
    fs::remove_all(root, ec);
  }
  return r;
}

}  // namespace takt::pipeline
