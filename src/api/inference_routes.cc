// Inference routes: Open Inference Protocol v2 (/v2/...), the SageMaker
// runtime (/endpoints/{name}/invocations, which also takes MLflow's scoring
// formats), health and readiness, /metrics.
//
// The hot path: the endpoint comes from the serving snapshot (no lock, no
// database), the stage check from a per-thread cache, the body is parsed
// without a JSON DOM, and the rows go to a replica of the chosen variant
// (serving/runtime.h) as a job; the reply is written when the replica scored
// it, so no HTTP thread waits for a model.
#include <chrono>
#include <random>
#include <unordered_map>

#include "api/internal.h"
#include "core/time.h"
#include "serving/capture.h"
#include "serving/metrics.h"
#include "serving/protocols.h"
#include "serving/runtime.h"

namespace takt::api {
namespace {

using http::Request;
using http::Response;
using Clock = std::chrono::steady_clock;

enum class Protocol { kOip, kSageMaker };

// The stage rule (StageAccess) per principal, endpoint and action, cached per
// thread for a second: access changes apply within a second on the hot path.
Status CachedStageAccess(Platform& p, const serving::LiveEndpoint& live, std::string_view action,
                         const std::string& principal) {
  struct Entry {
    Clock::time_point until;
    const void* endpoint;
    Status verdict;
  };
  thread_local std::unordered_map<std::string, Entry> cache;
  thread_local std::string key;  // its capacity stays: no allocation per request
  key.clear();
  key.append(principal).append(1, '\n').append(live.name).append(1, '\n').append(action);
  auto now = Clock::now();
  if (auto it = cache.find(key); it != cache.end() && it->second.until > now && it->second.endpoint == &live)
    return it->second.verdict;
  serving::Endpoint e;
  e.name = live.name;
  e.stage = live.stage;
  e.model_group = live.group;
  Status verdict = internal::StageAccess(p, e, action, principal);
  if (cache.size() > 4096) cache.clear();
  cache[key] = Entry{now + std::chrono::seconds(1), &live, verdict};
  return verdict;
}

// Errors as each protocol's clients expect them.
Response ProtocolError(Protocol protocol, const Error& error) {
  if (protocol == Protocol::kOip) {
    return http::JsonResponse(
        HttpStatus(error.code()),
        Json{{"error", error.message()}, {"code", std::string(CodeName(error.code()))}}.dump());
  }
  // SageMaker runtime: botocore reads the type from x-amzn-ErrorType and the
  // text from "message"; takt's own error object rides along.
  Response r = http::ErrorResponse(error);
  auto body = Json::parse(r.body, nullptr, false);
  if (body.is_object()) {
    body["message"] = error.message();
    r.body = body.dump();
  }
  const char* type = "ValidationError";
  switch (error.code()) {
    case Code::kNotFound:
      type = "ValidationError";
      break;
    case Code::kUnauthenticated:
      type = "UnrecognizedClientException";
      break;
    case Code::kPermissionDenied:
      type = "AccessDeniedException";
      break;
    case Code::kResourceExhausted:
      type = "ThrottlingException";
      break;
    case Code::kUnavailable:
      type = "ServiceUnavailable";
      break;
    case Code::kInternal:
      type = "InternalFailure";
      break;
    default:
      break;
  }
  r.headers.emplace_back("x-amzn-ErrorType", type);
  return r;
}

// One inference request on its way through a replica.
struct Call {
  Platform* p = nullptr;
  Protocol protocol = Protocol::kSageMaker;
  std::shared_ptr<const serving::LiveEndpoint> live;  // keeps the variant's runtime alive
  serving::VariantRuntime* runtime = nullptr;
  http::Responder respond;
  Clock::time_point start;
  ml::Matrix rows;
  std::vector<float> out;
  std::string id;               // OIP request id
  serving::InferenceInput oip;  // OIP: what the reply must look like (id, outputs, binary)
  bool csv_reply = false;
  std::string custom_attributes;
  std::string inference_id;
  std::string content_type;  // of the request, for data capture (set only when the endpoint captures)
  serving::Job job;

  const serving::LoadedModel& model() const { return runtime->model(); }

  void Finish(Response r) {
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    p->serving->Record(model().endpoint, model().variant, r.status, seconds * 1e3,
                       r.status >= 400 ? std::string_view(error) : std::string_view());
    if (serving::VariantMetrics* m = runtime->metrics()) {
      m->Observe(r.status, seconds);
      if (r.status >= 400)
        m->ObserveError(r.status < 500 ? serving::ErrorType::kInvalidInput : serving::ErrorType::kInternal);
    }
    if (r.status == 200 && live->capture && live->capture->ShouldCapture()) Capture(seconds);
    r.headers.emplace_back("x-Amzn-Invoked-Production-Variant", model().variant);
    if (!custom_attributes.empty())
      r.headers.emplace_back("X-Amzn-SageMaker-Custom-Attributes", custom_attributes);
    if (!inference_id.empty()) r.headers.emplace_back("X-Amzn-SageMaker-Inference-Id", inference_id);
    respond(std::move(r));
  }
  // Sampled requests, for monitoring: the rows as scored and the predictions.
  void Capture(double seconds) {
    serving::CaptureRecord rec;
    rec.time_ms = RealClock().NowMillis();
    rec.endpoint = model().endpoint;
    rec.variant = model().variant;
    rec.model_version = model().version;
    rec.inference_id = !inference_id.empty() ? inference_id : id;
    rec.latency_us = static_cast<int64_t>(seconds * 1e6);
    rec.status = 200;
    rec.content_type = content_type;
    rec.input_cols = rows.cols;
    rec.input = std::move(rows.values);  // scored and answered: the call needs them no more
    rec.output_cols = model().num_outputs;
    rec.output = std::move(out);
    live->capture->Enqueue(rec);
  }
  void Fail(const Error& e) {
    error = e.message();
    Finish(ProtocolError(protocol, e));
  }
  std::string error;
};

void Scored(Call* call, Status status) {
  std::unique_ptr<Call> owned(call);
  if (!status) return call->Fail(status.error());
  const auto& m = call->model();
  serving::PredictionsView view(call->out, call->rows.rows, m.num_outputs);
  Response r;
  if (call->protocol == Protocol::kOip) {
    serving::OipReply reply = serving::RenderOipReply(m.endpoint, m.version, call->oip, view);
    r.content_type = std::string(reply.content_type);
    r.body = std::move(reply.body);
    if (reply.json_header_length)
      r.headers.emplace_back("Inference-Header-Content-Length", std::to_string(*reply.json_header_length));
    return call->Finish(std::move(r));
  }
  r.content_type = call->csv_reply ? "text/csv" : "application/json";
  r.body = call->csv_reply ? serving::RenderCsvPredictions(view) : serving::RenderJsonPredictions(view);
  call->Finish(std::move(r));
}

// Hands a parsed call to its replica; answers at once if it is refused.
void Submit(std::unique_ptr<Call> call) {
  Call* c = call.get();
  c->out.assign(c->rows.rows * c->model().num_outputs, 0.0f);
  c->job.rows = c->rows.values.data();
  c->job.n = c->rows.rows;
  c->job.out = c->out.data();
  c->job.done = [c](Status s, size_t) { Scored(c, std::move(s)); };
  Call* raw = call.release();
  if (Status admitted = raw->runtime->Submit(&raw->job); !admitted) {
    std::unique_ptr<Call> back(raw);
    if (back->live->metrics) {
      back->live->metrics->Reject(admitted.error().code() == Code::kResourceExhausted
                                      ? serving::RejectReason::kQueueFull
                                      : serving::RejectReason::kUnavailable);
    }
    back->Fail(admitted.error());
  }
}

bool RuntimeReady(const serving::VariantRuntime& rt) {
  return rt.Stats().replicas > 0 || rt.settings().scale_to_zero;
}

bool Ready(const serving::LiveEndpoint& e) {
  for (size_t i = 0; i < e.variants.size(); ++i) {
    if (e.weights[i] > 0 && !RuntimeReady(*e.variants[i])) return false;
  }
  return true;
}

// Resolves endpoint, stage access and variant for a request; a refusal is the
// response. The call takes over `respond` only when it is returned.
Result<std::unique_ptr<Call>> Begin(Platform& p, Request& req, Protocol protocol, std::string_view action,
                                    http::Responder& respond) {
  auto call = std::make_unique<Call>();
  call->p = &p;
  call->protocol = protocol;
  call->start = Clock::now();
  const std::string& name = req.path_params.at("name");
  TAKT_ASSIGN_OR_RETURN(call->live, p.serving->Live(name));
  TAKT_RETURN_IF_ERROR(CachedStageAccess(p, *call->live, action, req.principal_id));
  std::string target(req.Header("x-amzn-sagemaker-target-variant"));
  if (target.empty()) target = req.Header("x-takt-target-variant");
  if (auto v = req.path_params.find("version"); v != req.path_params.end()) {
    for (const auto& r : call->live->variants) {
      if (std::to_string(r->model().version) == v->second) call->runtime = r.get();
    }
    if (!call->runtime) {
      return NotFound("endpoint " + name + " does not serve version " + v->second + " (it serves " +
                      call->live->VariantNames() + ")");
    }
  } else if (!target.empty()) {
    call->runtime = call->live->Named(target);
    if (!call->runtime) {
      return NotFound("endpoint " + name + " has no variant '" + target + "' (it serves " +
                      call->live->VariantNames() + ")");
    }
  } else {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    call->runtime = call->live->Pick(std::uniform_real_distribution<double>(0, 100)(rng));
  }
  call->respond = std::move(respond);
  return call;
}

}  // namespace

void AddInferenceRoutes(Platform& p, http::Router& router) {
  auto add = [&](std::string method, std::string pattern, std::string action, http::AsyncHandler h,
                 size_t max_body) {
    http::Route route;
    route.method = std::move(method);
    route.pattern = std::move(pattern);
    route.action = std::move(action);
    route.max_body_bytes = max_body;
    route.async_handler = std::move(h);
    router.Add(std::move(route));
  };
  constexpr size_t kMaxBody = size_t{16} << 20;
  auto add_sync = [&](std::string method, std::string pattern, std::string action, http::Handler h) {
    http::Route route;
    route.method = std::move(method);
    route.pattern = std::move(pattern);
    route.action = std::move(action);
    route.is_public = route.action.empty();
    route.max_body_bytes = 0;
    route.handler = std::move(h);
    router.Add(std::move(route));
  };

  // Health (public, no data). Live: the process answers. Ready: every
  // endpoint has a variant that takes requests (replicas up, or scaled to
  // zero and able to start one).
  add_sync("GET", "/v2/health/live", "", [](Request&) { return internal::JsonOk({{"live", true}}); });
  add_sync("GET", "/v2/health/ready", "", [&p](Request&) {
    std::string not_ready;
    for (const auto& e : p.serving->LiveEndpoints()) {
      if (!Ready(*e)) not_ready += (not_ready.empty() ? "" : ", ") + e->name;
    }
    if (!not_ready.empty())
      return internal::JsonOk({{"ready", false}, {"error", "endpoints not ready: " + not_ready}}, 503);
    return internal::JsonOk({{"ready", true}});
  });
  add_sync("GET", "/ping", "", [](Request&) { return internal::JsonOk({{"status", "ok"}}); });
  add_sync("GET", "/v2", "", [](Request&) {
    return internal::JsonOk({{"name", "takt"}, {"version", "0.1.0"}, {"extensions", {"binary_tensor_data"}}});
  });

  // Prometheus text format: every endpoint's and variant's series, the process.
  add_sync("GET", "/metrics", "metrics:read", [&p](Request&) {
    Response r;
    r.content_type = std::string(serving::kMetricsContentType);
    r.body = p.serving->metrics().RenderText();
    return r;
  });

  // OIP model metadata and readiness, of the endpoint or one of its versions.
  auto describe = [&p](Request& req, bool ready_only) -> Response {
    auto live = p.serving->Live(req.path_params.at("name"));
    if (!live) return ProtocolError(Protocol::kOip, live.error());
    if (auto s = CachedStageAccess(p, **live, "endpoint:describe", req.principal_id); !s)
      return ProtocolError(Protocol::kOip, s.error());
    serving::VariantRuntime* rt = nullptr;
    if (auto v = req.path_params.find("version"); v != req.path_params.end()) {
      for (const auto& r : (*live)->variants) {
        if (std::to_string(r->model().version) == v->second) rt = r.get();
      }
      if (!rt) {
        return ProtocolError(
            Protocol::kOip,
            Error(Code::kNotFound, "endpoint " + (*live)->name + " does not serve version " + v->second +
                                       " (it serves " + (*live)->VariantNames() + ")"));
      }
    } else {
      int best = -1;  // the variant with the most traffic
      for (size_t i = 0; i < (*live)->variants.size(); ++i) {
        if ((*live)->weights[i] > best) {
          best = (*live)->weights[i];
          rt = (*live)->variants[i].get();
        }
      }
    }
    const auto& m = rt->model();
    if (ready_only) {
      bool ready = RuntimeReady(*rt);
      return internal::JsonOk(
          {{"name", (*live)->name}, {"version", std::to_string(m.version)}, {"ready", ready}},
          ready ? 200 : 503);
    }
    return http::JsonResponse(200, serving::RenderOipMetadata(m.endpoint, m.version, m.feature_names));
  };
  add_sync("GET", "/v2/models/{name}", "endpoint:describe",
           [describe](Request& req) { return describe(req, false); });
  add_sync("GET", "/v2/models/{name}/ready", "endpoint:describe",
           [describe](Request& req) { return describe(req, true); });
  add_sync("GET", "/v2/models/{name}/versions/{version}", "endpoint:describe",
           [describe](Request& req) { return describe(req, false); });
  add_sync("GET", "/v2/models/{name}/versions/{version}/ready", "endpoint:describe",
           [describe](Request& req) { return describe(req, true); });

  // Open Inference Protocol v2.
  auto infer = [&p](Request& req, http::Responder respond) {
    auto call = Begin(p, req, Protocol::kOip, "endpoint:invoke", respond);
    if (!call) return respond(ProtocolError(Protocol::kOip, call.error()));
    Call& c = **call;
    // JSON, or with the binary tensor extension a JSON header of
    // Inference-Header-Content-Length bytes followed by the raw tensors.
    serving::ParseOptions options;
    std::string header_length(req.Header("inference-header-content-length"));
    if (!header_length.empty()) {
      auto n = internal::ParseInt(header_length, "Inference-Header-Content-Length");
      if (!n || *n < 0) {
        return c.Fail(Error(Code::kInvalidArgument,
                            "Inference-Header-Content-Length '" + header_length + "' is not a byte count"));
      }
      options.json_header_length = static_cast<size_t>(*n);
    } else if (req.ContentType() != "application/json" && !req.ContentType().empty()) {
      return c.Fail(Error(Code::kUnsupportedMedia,
                          "expected Content-Type application/json (or binary "
                          "tensors with Inference-Header-Content-Length), got '" +
                              std::string(req.ContentType()) + "'"));
    }
    if (c.live->capture)
      c.content_type = options.json_header_length ? "application/octet-stream" : "application/json";
    auto parsed = serving::ParseOipInfer(req.body, c.model().feature_names, options);
    if (!parsed) return c.Fail(parsed.error());
    for (const auto& o : parsed->requested_outputs) {
      if (o != "predict") {
        return c.Fail(Error(Code::kInvalidArgument, "output '" + o + "' is not an output of " +
                                                        c.model().endpoint + " (it has: predict)"));
      }
    }
    c.id = parsed->id;
    c.rows = std::move(parsed->rows);
    c.oip = std::move(*parsed);
    Submit(std::move(*call));
  };
  add("POST", "/v2/models/{name}/infer", "endpoint:invoke", infer, kMaxBody);
  add("POST", "/v2/models/{name}/versions/{version}/infer", "endpoint:invoke", infer, kMaxBody);

  // SageMaker runtime (and MLflow's scoring formats).
  add(
      "POST", "/endpoints/{name}/invocations", "endpoint:invoke",
      [&p](Request& req, http::Responder respond) {
        auto call = Begin(p, req, Protocol::kSageMaker, "endpoint:invoke", respond);
        if (!call) return respond(ProtocolError(Protocol::kSageMaker, call.error()));
        Call& c = **call;
        c.custom_attributes = req.Header("x-amzn-sagemaker-custom-attributes");
        c.inference_id = req.Header("x-amzn-sagemaker-inference-id");
        std::string_view ct = req.ContentType();
        if (c.live->capture) c.content_type = ct;
        if (req.body.empty()) return c.Fail(Error(Code::kInvalidArgument, "the request body is empty"));
        // text/csv, or JSON: SageMaker instances and MLflow's scoring formats.
        auto parsed = serving::ParseInvocation(ct, req.body, c.model().feature_names);
        if (!parsed) return c.Fail(parsed.error());
        c.rows = std::move(parsed->rows);
        std::string_view accept = req.Header("accept");
        c.csv_reply = accept.find("text/csv") != std::string_view::npos ||
                      (accept.find("application/json") == std::string_view::npos && ct == "text/csv");
        Submit(std::move(*call));
      },
      kMaxBody);
}

}  // namespace takt::api
