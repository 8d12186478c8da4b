#include "release/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>

#include "core/json.h"
#include "pipeline/spec.h"
#include "serving/serving.h"

namespace takt::release {
namespace {

// A YAML document as JSON: mappings, sequences, and scalars typed as YAML 1.2
// core reads them (quoted scalars stay strings).
Json ToJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      Json o = Json::object();
      for (const auto& kv : n) o[kv.first.Scalar()] = ToJson(kv.second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      Json a = Json::array();
      for (const auto& x : n) a.push_back(ToJson(x));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;
      if (s == "true") return true;
      if (s == "false") return false;
      char* end = nullptr;
      long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end == s.c_str() + s.size()) return static_cast<int64_t>(i);
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) return d;
      return s;
    }
    default:
      return nullptr;
  }
}

class Checker {
 public:
  explicit Checker(std::string file) : file_(std::move(file)) {}

  Error Fail(const std::string& where, const std::string& what) const {
    return Error(Code::kInvalidArgument, file_ + ": " + where + ": " + what);
  }

  Status Keys(const Json& o, const std::string& where, const std::set<std::string>& known) const {
    if (!o.is_object()) return std::unexpected(Fail(where, "expected a mapping"));
    for (const auto& [k, _] : o.items()) {
      if (!known.contains(k)) {
        std::string list;
        for (const auto& x : known) list += (list.empty() ? "" : ", ") + x;
        return std::unexpected(Fail(where, "unknown key '" + k + "' (known: " + list + ")"));
      }
    }
    return Ok();
  }

  Result<int> Int(const Json& v, const std::string& where, int lo, int hi) const {
    if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi) {
      return std::unexpected(
          Fail(where, "expected a whole number from " + std::to_string(lo) + " to " + std::to_string(hi)));
    }
    return v.get<int>();
  }

  Result<double> Number(const Json& v, const std::string& where, double lo, double hi) const {
    if (!v.is_number() || v.get<double>() < lo || v.get<double>() > hi) {
      return std::unexpected(Fail(where, "expected a number from " + Fixed(lo) + " to " + Fixed(hi)));
    }
    return v.get<double>();
  }

  Result<double> Seconds(const Json& v, const std::string& where) const {
    std::string text = v.is_string() ? v.get<std::string>() : v.is_number() ? v.dump() : std::string();
    auto d = pipeline::ParseDuration(text);
    if (!d) return std::unexpected(Fail(where, d.error().message()));
    return *d;
  }

  Result<double> Millis(const Json& v, const std::string& where) const {
    if (v.is_number()) return Number(v, where, 0, 3.6e6);  // a bare number is milliseconds here
    TAKT_ASSIGN_OR_RETURN(double s, Seconds(v, where));
    return s * 1000.0;
  }

  Result<std::string> Text(const Json& v, const std::string& where) const {
    if (!v.is_string() || v.get<std::string>().empty())
      return std::unexpected(Fail(where, "expected a non-empty string"));
    return v.get<std::string>();
  }

 private:
  static std::string Fixed(double d) {
    if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
    return std::to_string(d);
  }
  std::string file_;
};

int StageRank(std::string_view s) { return s == "dev" ? 0 : s == "int" ? 1 : s == "prod" ? 2 : -1; }

Status ParseStrategy(const Checker& c, const Json& v, const std::string& where, StageConfig& st) {
  if (v.is_string()) return ParseStrategy(c, Json{{"type", v}}, where, st);
  TAKT_RETURN_IF_ERROR(c.Keys(v, where, {"type", "percent", "duration", "min_requests", "rollback_on"}));
  if (!v.contains("type"))
    return std::unexpected(c.Fail(where, "needs a type (all-at-once, blue-green, canary)"));
  TAKT_ASSIGN_OR_RETURN(std::string type, c.Text(v["type"], where + ".type"));
  if (type == "all-at-once") {
    st.strategy = Strategy::kAllAtOnce;
  } else if (type == "blue-green") {
    st.strategy = Strategy::kBlueGreen;
    st.duration_seconds = 60;
  } else if (type == "canary") {
    st.strategy = Strategy::kCanary;
    st.duration_seconds = 600;
  } else {
    return std::unexpected(
        c.Fail(where + ".type", "'" + type + "' is not a strategy (all-at-once, blue-green, canary)"));
  }
  if (st.strategy == Strategy::kAllAtOnce && v.size() > 1) {
    return std::unexpected(c.Fail(where, "all-at-once takes no other settings"));
  }
  if (v.contains("percent")) {
    if (st.strategy != Strategy::kCanary)
      return std::unexpected(c.Fail(where + ".percent", "only a canary has one"));
    TAKT_ASSIGN_OR_RETURN(st.canary_percent, c.Int(v["percent"], where + ".percent", 1, 99));
  }
  if (v.contains("duration")) {
    TAKT_ASSIGN_OR_RETURN(st.duration_seconds, c.Seconds(v["duration"], where + ".duration"));
  }
  if (v.contains("min_requests")) {
    TAKT_ASSIGN_OR_RETURN(st.min_requests, c.Int(v["min_requests"], where + ".min_requests", 1, 1000000));
  }
  if (v.contains("rollback_on")) {
    const Json& r = v["rollback_on"];
    std::string w = where + ".rollback_on";
    TAKT_RETURN_IF_ERROR(c.Keys(r, w, {"error_rate", "p99_latency"}));
    if (r.contains("error_rate")) {
      TAKT_ASSIGN_OR_RETURN(st.max_error_rate, c.Number(r["error_rate"], w + ".error_rate", 0, 1));
    }
    if (r.contains("p99_latency")) {
      TAKT_ASSIGN_OR_RETURN(st.max_p99_latency_ms, c.Millis(r["p99_latency"], w + ".p99_latency"));
    }
  }
  return Ok();
}

Status ParseGate(const Checker& c, const Json& g, const std::string& where, StageConfig& st) {
  if (!g.is_object() || g.size() != 1) {
    return std::unexpected(
        c.Fail(where, "a gate is one of smoke_test, quality, approval (e.g. `- smoke_test: true`)"));
  }
  const auto& [kind, v] = *g.items().begin();
  std::string w = where + "." + kind;
  if (kind == "smoke_test") {
    if (st.smoke_test) return std::unexpected(c.Fail(w, "the stage has a smoke_test already"));
    SmokeTest s;
    if (v.is_boolean()) {
      if (!v.get<bool>()) return Ok();
    } else {
      TAKT_RETURN_IF_ERROR(c.Keys(v, w, {"requests", "max_p99_latency"}));
      if (v.contains("requests")) {
        TAKT_ASSIGN_OR_RETURN(s.requests, c.Int(v["requests"], w + ".requests", 1, 10000));
      }
      if (v.contains("max_p99_latency")) {
        TAKT_ASSIGN_OR_RETURN(s.max_p99_latency_ms, c.Millis(v["max_p99_latency"], w + ".max_p99_latency"));
      }
    }
    st.smoke_test = s;
  } else if (kind == "quality") {
    if (st.quality) return std::unexpected(c.Fail(w, "the stage has a quality gate already"));
    TAKT_RETURN_IF_ERROR(c.Keys(v, w, {"metric", "compare_to", "max_regression", "direction"}));
    QualityGate q;
    if (!v.contains("metric")) return std::unexpected(c.Fail(w, "needs a metric (e.g. metric: auc)"));
    TAKT_ASSIGN_OR_RETURN(q.metric, c.Text(v["metric"], w + ".metric"));
    q.compare_to = "prod";
    if (v.contains("compare_to")) {
      TAKT_ASSIGN_OR_RETURN(q.compare_to, c.Text(v["compare_to"], w + ".compare_to"));
    }
    if (v.contains("max_regression")) {
      TAKT_ASSIGN_OR_RETURN(q.max_regression, c.Number(v["max_regression"], w + ".max_regression", 0, 1e9));
    }
    if (v.contains("direction")) {
      TAKT_ASSIGN_OR_RETURN(std::string d, c.Text(v["direction"], w + ".direction"));
      if (d != "max" && d != "min")
        return std::unexpected(c.Fail(w + ".direction", "'" + d + "' is not max (higher is better) or min"));
      q.higher_is_better = d == "max";
    }
    st.quality = q;
    st.entry_gates.push_back("quality");
  } else if (kind == "approval") {
    if (st.approval) return std::unexpected(c.Fail(w, "the stage has an approval gate already"));
    ApprovalGate a;
    if (!v.is_boolean() || !v.get<bool>()) {
      TAKT_RETURN_IF_ERROR(c.Keys(v, w, {"approvers", "persona", "group", "timeout"}));
      if (v.contains("approvers")) {
        TAKT_ASSIGN_OR_RETURN(a.approvers, c.Int(v["approvers"], w + ".approvers", 1, 5));
      }
      if (v.contains("persona")) {
        TAKT_ASSIGN_OR_RETURN(a.persona, c.Text(v["persona"], w + ".persona"));
      }
      if (v.contains("group")) {
        TAKT_ASSIGN_OR_RETURN(a.group, c.Text(v["group"], w + ".group"));
      }
      if (v.contains("timeout")) {
        TAKT_ASSIGN_OR_RETURN(a.timeout_seconds, c.Seconds(v["timeout"], w + ".timeout"));
      }
      if (a.timeout_seconds <= 0) return std::unexpected(c.Fail(w + ".timeout", "must be more than 0"));
    }
    st.approval = a;
    st.entry_gates.push_back("approval");
  } else {
    return std::unexpected(
        c.Fail(where, "unknown gate '" + kind + "' (known: smoke_test, quality, approval)"));
  }
  return Ok();
}

}  // namespace

std::string_view StrategyName(Strategy s) {
  switch (s) {
    case Strategy::kAllAtOnce:
      return "all-at-once";
    case Strategy::kBlueGreen:
      return "blue-green";
    case Strategy::kCanary:
      return "canary";
  }
  return "all-at-once";
}

const StageConfig* ReleaseConfig::Stage(std::string_view name) const {
  for (const auto& s : stages) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string ReleaseConfig::StageNames() const {
  std::string out;
  for (const auto& s : stages) out += (out.empty() ? "" : ", ") + s.name;
  return out;
}

Result<ReleaseConfig> ParseConfig(std::string_view yaml, std::string_view file) {
  Checker c{std::string(file)};
  Json doc;
  try {
    doc = ToJson(YAML::Load(std::string(yaml)));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string(file) + ": not valid YAML: " + e.what());
  }
  TAKT_RETURN_IF_ERROR(c.Keys(doc, "top level", {"model_group", "stages"}));
  ReleaseConfig cfg;
  cfg.yaml = std::string(yaml);
  if (!doc.contains("model_group")) return std::unexpected(c.Fail("top level", "needs model_group"));
  TAKT_ASSIGN_OR_RETURN(cfg.model_group, c.Text(doc["model_group"], "model_group"));
  if (!doc.contains("stages") || !doc["stages"].is_array() || doc["stages"].empty()) {
    return std::unexpected(c.Fail("stages", "needs a list of stages (dev, int, prod)"));
  }
  int last_rank = -1;
  for (size_t i = 0; i < doc["stages"].size(); ++i) {
    const Json& s = doc["stages"][i];
    std::string where = "stages[" + std::to_string(i) + "]";
    TAKT_RETURN_IF_ERROR(c.Keys(
        s, where, {"name", "replicas", "autoscaling", "batching", "queue", "capture", "strategy", "gates"}));
    StageConfig st;
    if (!s.contains("name")) return std::unexpected(c.Fail(where, "needs a name (dev, int or prod)"));
    TAKT_ASSIGN_OR_RETURN(st.name, c.Text(s["name"], where + ".name"));
    int rank = StageRank(st.name);
    if (rank < 0)
      return std::unexpected(c.Fail(where + ".name", "'" + st.name + "' is not a stage (dev, int, prod)"));
    if (rank <= last_rank) {
      return std::unexpected(
          c.Fail(where + ".name", "'" + st.name + "' is listed twice or out of order (dev, int, prod)"));
    }
    last_rank = rank;
    if (s.contains("replicas")) {
      const Json& r = s["replicas"];
      TAKT_RETURN_IF_ERROR(c.Keys(r, where + ".replicas", {"min", "max"}));
      if (r.contains("min")) {
        TAKT_ASSIGN_OR_RETURN(st.min_replicas, c.Int(r["min"], where + ".replicas.min", 0, 256));
      }
      if (r.contains("max")) {
        TAKT_ASSIGN_OR_RETURN(st.max_replicas, c.Int(r["max"], where + ".replicas.max", 1, 256));
      }
      if (st.max_replicas < st.min_replicas) st.max_replicas = std::max(st.min_replicas, 1);
      if (r.contains("max") && r["max"].get<int>() < st.min_replicas)
        return std::unexpected(c.Fail(where + ".replicas", "max is less than min"));
    }
    if (s.contains("autoscaling")) {
      const Json& a = s["autoscaling"];
      TAKT_RETURN_IF_ERROR(c.Keys(
          a, where + ".autoscaling",
          {"target_in_flight", "scale_to_zero", "scale_out_cooldown", "scale_in_cooldown", "idle_to_zero"}));
      if (a.contains("scale_out_cooldown")) {
        TAKT_ASSIGN_OR_RETURN(st.scale_out_cooldown_seconds,
                              c.Seconds(a["scale_out_cooldown"], where + ".autoscaling.scale_out_cooldown"));
      }
      if (a.contains("scale_in_cooldown")) {
        TAKT_ASSIGN_OR_RETURN(st.scale_in_cooldown_seconds,
                              c.Seconds(a["scale_in_cooldown"], where + ".autoscaling.scale_in_cooldown"));
      }
      if (a.contains("idle_to_zero")) {
        TAKT_ASSIGN_OR_RETURN(st.idle_to_zero_seconds,
                              c.Seconds(a["idle_to_zero"], where + ".autoscaling.idle_to_zero"));
      }
      if (a.contains("target_in_flight")) {
        TAKT_ASSIGN_OR_RETURN(
            st.target_in_flight,
            c.Number(a["target_in_flight"], where + ".autoscaling.target_in_flight", 0.1, 10000));
      }
      if (a.contains("scale_to_zero")) {
        if (!a["scale_to_zero"].is_boolean())
          return std::unexpected(c.Fail(where + ".autoscaling.scale_to_zero", "expected true or false"));
        st.scale_to_zero = a["scale_to_zero"].get<bool>();
      }
    }
    if (st.min_replicas == 0 && !st.scale_to_zero) {
      return std::unexpected(c.Fail(where + ".replicas.min", "0 needs autoscaling.scale_to_zero: true"));
    }
    if (s.contains("batching")) {
      const Json& b = s["batching"];
      TAKT_RETURN_IF_ERROR(c.Keys(b, where + ".batching", {"max_batch_size", "max_wait"}));
      if (b.contains("max_batch_size")) {
        TAKT_ASSIGN_OR_RETURN(st.max_batch_size,
                              c.Int(b["max_batch_size"], where + ".batching.max_batch_size", 1, 4096));
      }
      if (b.contains("max_wait")) {
        const Json& w = b["max_wait"];
        std::string text = w.is_string() ? w.get<std::string>() : "";
        if (text.ends_with("us")) {
          TAKT_ASSIGN_OR_RETURN(
              double us, c.Seconds(Json(text.substr(0, text.size() - 2)), where + ".batching.max_wait"));
          st.max_batch_wait_us = us;
        } else {
          TAKT_ASSIGN_OR_RETURN(double sec, c.Seconds(w, where + ".batching.max_wait"));
          st.max_batch_wait_us = sec * 1e6;
        }
        if (st.max_batch_wait_us > 1e6)
          return std::unexpected(c.Fail(where + ".batching.max_wait", "at most 1s (e.g. 200us, 2ms)"));
      }
    }
    if (s.contains("queue")) {
      const Json& q = s["queue"];
      TAKT_RETURN_IF_ERROR(c.Keys(q, where + ".queue", {"capacity"}));
      if (q.contains("capacity")) {
        TAKT_ASSIGN_OR_RETURN(st.queue_capacity, c.Int(q["capacity"], where + ".queue.capacity", 1, 1000000));
      }
    }
    if (s.contains("capture")) {
      TAKT_ASSIGN_OR_RETURN(st.capture_percent, c.Int(s["capture"], where + ".capture", 0, 100));
    }
    if (s.contains("strategy"))
      TAKT_RETURN_IF_ERROR(ParseStrategy(c, s["strategy"], where + ".strategy", st));
    if (s.contains("gates")) {
      if (!s["gates"].is_array())
        return std::unexpected(c.Fail(where + ".gates", "expected a list of gates"));
      for (size_t g = 0; g < s["gates"].size(); ++g) {
        TAKT_RETURN_IF_ERROR(ParseGate(c, s["gates"][g], where + ".gates[" + std::to_string(g) + "]", st));
      }
    }
    cfg.stages.push_back(std::move(st));
  }
  // References between stages, once all are known.
  for (size_t i = 0; i < cfg.stages.size(); ++i) {
    const auto& st = cfg.stages[i];
    if (st.quality && !cfg.Stage(st.quality->compare_to)) {
      return std::unexpected(c.Fail(
          "stages[" + std::to_string(i) + "].gates.quality.compare_to",
          "stage '" + st.quality->compare_to + "' is not one of the stages (" + cfg.StageNames() + ")"));
    }
  }
  return cfg;
}

ReleaseConfig DefaultConfig(const std::string& model_group) {
  ReleaseConfig cfg;
  cfg.model_group = model_group;
  StageConfig dev;
  dev.name = "dev";
  dev.smoke_test = SmokeTest{};
  StageConfig in;
  in.name = "int";
  in.smoke_test = SmokeTest{};
  in.quality = QualityGate{"auc", "prod", 0.01, true};
  in.approval = ApprovalGate{};
  in.entry_gates = {"quality", "approval"};
  StageConfig prod = in;
  prod.name = "prod";
  cfg.stages = {dev, in, prod};
  return cfg;
}

std::string EndpointSettingsJson(const StageConfig& s) {
  return Json{{"replicas", {{"min", s.min_replicas}, {"max", s.max_replicas}}},
              {"autoscaling",
               {{"target_in_flight", s.target_in_flight},
                {"scale_to_zero", s.scale_to_zero},
                {"scale_out_cooldown_ms", s.scale_out_cooldown_seconds * 1000},
                {"scale_in_cooldown_ms", s.scale_in_cooldown_seconds * 1000},
                {"idle_to_zero_ms", s.idle_to_zero_seconds * 1000}}},
              {"batching", {{"max_batch_size", s.max_batch_size}, {"max_wait_us", s.max_batch_wait_us}}},
              {"queue", {{"capacity", s.queue_capacity}}},
              {"capture_percent", s.capture_percent},
              {"strategy", StrategyName(s.strategy)}}
      .dump();
}

}  // namespace takt::release
