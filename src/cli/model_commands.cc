#include "cli/model_commands.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/context.h"
#include "cli/output.h"
#include "crypto/crypto.h"

namespace takt::cli {
namespace {

namespace fs = std::filesystem;

// The largest model file the registry takes.
constexpr size_t kMaxModelBytes = size_t{64} << 20;

// Options of the model commands; they outlive parsing (CLI11 binds to them).
struct ModelOptions {
  std::string group;
  std::string version;  // a number or an alias
  std::string alias;
  std::string comment;
  std::string project;
  std::string description;
  bool description_given = false;
  std::vector<std::string> tags;
  std::vector<std::string> remove_tags;
  std::string status;
  std::vector<std::string> metrics;
  std::string sort;
  int limit = 50;
  // register
  std::string file;
  std::string framework = "xgboost";
  std::string schema_file;
  std::string features;
  std::string metrics_file;
  std::string params_file;
  std::string card_file;
  std::string sample_file;
  bool remove = false;
};

std::string Models(const std::string& group) { return "/api/v1/models/" + Enc(group); }

std::string VersionPath(const ModelOptions& o) { return Models(o.group) + "/versions/" + Enc(o.version); }

std::string MetricsLine(const Json& m, size_t max = 6) {
  std::string s;
  if (!m.is_object()) return s;
  size_t n = 0;
  for (const auto& [k, v] : m.items()) {
    if (!v.is_number()) continue;
    if (n++ == max) return s + " …";
    s += (s.empty() ? "" : " ") + k + "=" + (v.is_number_integer() ? v.dump() : Num(v.get<double>()));
  }
  return s;
}

std::string TagsLine(const Json& tags) {
  std::string s;
  if (!tags.is_object()) return s;
  for (const auto& [k, v] : tags.items()) s += (s.empty() ? "" : ", ") + k + "=" + v.get<std::string>();
  return s;
}

// {"champion": 3} → "champion=v3"
std::string AliasesLine(const Json& aliases) {
  std::string s;
  if (aliases.is_object()) {
    for (const auto& [k, v] : aliases.items()) s += (s.empty() ? "" : ", ") + k + "=v" + v.dump();
  } else if (aliases.is_array()) {
    for (const auto& a : aliases) s += (s.empty() ? "" : ", ") + a.get<std::string>();
  }
  return s;
}

// "k=v" → {k, v}; an error naming the flag otherwise.
Result<std::pair<std::string, std::string>> TagPair(const std::string& t, const char* flag) {
  auto eq = t.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgument(std::string(flag) + " '" + t + "': expected KEY=VALUE, e.g. line=A");
  }
  return std::pair{t.substr(0, eq), t.substr(eq + 1)};
}

Result<Json> TagsJson(const std::vector<std::string>& tags) {
  Json out = Json::object();
  for (const auto& t : tags) {
    TAKT_ASSIGN_OR_RETURN(auto kv, TagPair(t, "--tag"));
    out[kv.first] = kv.second;
  }
  return out;
}

Result<Json> JsonFile(const std::string& path, const char* flag) {
  TAKT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto j = ParseJson(text, std::string(flag) + " " + path);
  if (!j) return std::unexpected(j.error());
  return *j;
}

std::string HistoryText(const Json& e) {
  std::string s = Str(e, "comment");
  if (!Str(e, "detail").empty()) s = Str(e, "detail") + (s.empty() ? "" : ": " + s);
  return s;
}

void PrintHistory(const Json& history, bool with_version) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : history) {
    std::vector<std::string> row = {ShortTime(Str(e, "time"))};
    if (with_version) row.push_back(e.value("version", 0) == 0 ? "group" : "v" + Str(e, "version"));
    for (const auto& c : {Str(e, "event"), Str(e, "status"), Str(e, "principal"), HistoryText(e)})
      row.push_back(c);
    rows.push_back(std::move(row));
  }
  if (with_version) {
    PrintTable({"TIME", "VERSION", "EVENT", "STATUS", "BY", "DETAIL"}, rows);
  } else {
    PrintTable({"TIME", "EVENT", "STATUS", "BY", "DETAIL"}, rows);
  }
}

void PrintCard(const Json& card) {
  if (!card.is_object()) {
    std::cout << "  none (add one with `takt model card GROUP VERSION --file card.json`)\n";
    return;
  }
  for (const char* k : {"intended_use", "limitations", "training_data", "ethical_considerations", "notes"}) {
    if (!Str(card, k).empty()) std::cout << "  " << k << ": " << Str(card, k) << "\n";
  }
}

void PrintVersionsTable(const Json& versions, bool with_group) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : versions) {
    std::vector<std::string> row;
    if (with_group) row.push_back(Str(v, "group"));
    const Json& l = v["lineage"];
    std::string from =
        Str(v, "source") == "import" ? "import" : Str(l, "dataset") + " v" + Str(l, "dataset_version");
    for (const auto& c :
         {"v" + Str(v, "version"), Str(v, "status"), AliasesLine(v["aliases"]), MetricsLine(v["metrics"], 3),
          from, Str(l, "run_id"), Str(v, "created_by"), Str(v, "decided_by")}) {
      row.push_back(c);
    }
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header = {"VERSION", "STATUS", "ALIASES", "METRICS",
                                     "FROM",    "RUN",    "AUTHOR",  "DECIDED BY"};
  if (with_group) header.insert(header.begin(), "GROUP");
  PrintTable(header, rows);
}

Status CmdList(Context& ctx, const ModelOptions& o) {
  std::string target = "/api/v1/models?project=" + Enc(o.project);
  if (!o.tags.empty()) {
    if (o.tags.size() > 1) return InvalidArgument("--tag: give one tag to filter by");
    target += "&tag=" + Enc(o.tags[0]);
  }
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : r) {
    rows.push_back({Str(g, "name"), Str(g, "project"), Str(g, "latest_version"), Str(g, "approved_versions"),
                    AliasesLine(g["aliases"]), TagsLine(g["tags"]), Str(g, "description"),
                    ShortTime(Str(g, "created_at"))});
  }
  PrintTable({"MODEL GROUP", "PROJECT", "LATEST", "APPROVED", "ALIASES", "TAGS", "DESCRIPTION", "CREATED"},
             rows);
  return Ok();
}

Status CmdCreate(Context& ctx, const ModelOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json tags, TagsJson(o.tags));
  Json body = {{"name", o.group}, {"project", o.project}, {"description", o.description}, {"tags", tags}};
  TAKT_ASSIGN_OR_RETURN(Json g, ctx.Call("POST", "/api/v1/models", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(g), Ok();
  std::cout << "Created model group " << Str(g, "name") << " (project " << Str(g, "project") << ")\n"
            << "  register a model with `takt model register --file model.json --group " << Str(g, "name")
            << "`\n";
  return Ok();
}

Status CmdShowVersion(Context& ctx, const ModelOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json v, ctx.Call("GET", VersionPath(o)));
  TAKT_ASSIGN_OR_RETURN(Json history,
                        ctx.Call("GET", Models(o.group) + "/versions/" + Str(v, "version") + "/history"));
  if (ctx.json()) {
    v["history"] = history;
    return PrintJson(v), Ok();
  }
  const Json& l = v["lineage"];
  std::cout << Str(v, "group") << " v" << Str(v, "version") << ": " << Str(v, "status");
  if (!v["aliases"].empty()) std::cout << " (" << AliasesLine(v["aliases"]) << ")";
  std::cout << "\n"
            << "  framework   " << Str(v, "framework") << " ("
            << (Str(v, "artifact_format") == "ubj" ? "UBJSON" : "JSON") << "), " << v["schema"].size()
            << " features\n"
            << "  metrics     " << MetricsLine(v["metrics"], 20) << "\n";
  if (Str(v, "source") == "import") {
    std::cout << "  lineage     none: imported by " << Str(v, "registered_by") << "\n";
  } else {
    std::cout << "  lineage     dataset " << Str(l, "dataset") << " v" << Str(l, "dataset_version")
              << ", run " << Str(l, "run_id") << "\n";
  }
  std::cout << "  created     " << ShortTime(Str(v, "created_at")) << " by " << Str(v, "created_by") << "\n";
  if (!Str(v, "decided_by").empty()) {
    std::cout << "  decided     " << ShortTime(Str(v, "decided_at")) << " by " << Str(v, "decided_by")
              << (Str(v, "comment").empty() ? "" : ": " + Str(v, "comment")) << "\n";
  }
  std::cout << "  sample      " << v["sample_rows"].size() << " rows for smoke tests\n";
  std::cout << "\nInput schema\n";
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < v["schema"].size(); ++i) {
    const Json& f = v["schema"][i];
    rows.push_back({std::to_string(i + 1), Str(f, "name"), Str(f, "type")});
  }
  PrintTable({"#", "FEATURE", "TYPE"}, rows);
  std::cout << "\nModel card\n";
  PrintCard(v["card"]);
  std::cout << "\nHistory\n";
  PrintHistory(history, false);
  return Ok();
}

Status CmdShow(Context& ctx, const ModelOptions& o) {
  if (!o.version.empty()) return CmdShowVersion(ctx, o);
  TAKT_ASSIGN_OR_RETURN(Json g, ctx.Call("GET", Models(o.group)));
  if (ctx.json()) return PrintJson(g), Ok();
  std::cout << "Model group " << Str(g, "name") << " (project " << Str(g, "project") << ")\n";
  if (!Str(g, "description").empty()) std::cout << "  description: " << Str(g, "description") << "\n";
  if (!g["tags"].empty()) std::cout << "  tags: " << TagsLine(g["tags"]) << "\n";
  std::cout << "  aliases: " << (g["aliases"].empty() ? "none" : AliasesLine(g["aliases"])) << "\n\n";
  PrintVersionsTable(g["versions"], false);
  return Ok();
}

Status CmdSearch(Context& ctx, const ModelOptions& o) {
  std::string target = "/api/v1/model-versions?limit=" + std::to_string(o.limit);
  if (!o.group.empty()) target += "&group=" + Enc(o.group);
  if (!o.project.empty()) target += "&project=" + Enc(o.project);
  if (!o.status.empty()) target += "&status=" + Enc(o.status);
  if (!o.alias.empty()) target += "&alias=" + Enc(o.alias);
  if (o.tags.size() > 1) return InvalidArgument("--tag: give one tag to filter by");
  if (!o.tags.empty()) target += "&tag=" + Enc(o.tags[0]);
  std::string metrics;
  for (const auto& m : o.metrics) metrics += (metrics.empty() ? "" : ",") + m;
  if (!metrics.empty()) target += "&metric=" + Enc(metrics);
  if (!o.sort.empty()) {
    // --sort auc (highest first), auc:asc, or the API's own form metric:auc; version and created as they are.
    const bool plain = o.sort == "version" || o.sort == "created" || o.sort.rfind("metric:", 0) == 0;
    target += "&sort=" + Enc(plain ? o.sort : "metric:" + o.sort);
  }
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(r), Ok();
  PrintVersionsTable(r, true);
  return Ok();
}

Status CmdRegister(Context& ctx, const ModelOptions& o) {
  if (o.group.empty()) return InvalidArgument("--group is required: the model group to register into");
  if (!o.schema_file.empty() && !o.features.empty()) {
    return InvalidArgument("give either --schema or --features, not both");
  }
  std::error_code ec;
  const auto size = fs::file_size(o.file, ec);
  if (ec) return NotFound("cannot read " + o.file + ": " + ec.message());
  if (size > kMaxModelBytes) {
    return InvalidArgument(o.file + " is " + HumanBytes(size) + "; the registry takes model files up to " +
                           HumanBytes(kMaxModelBytes));
  }
  TAKT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(o.file));
  Json body = {{"framework", o.framework}, {"model_base64", crypto::Base64Encode(bytes)}};
  if (!o.project.empty()) body["project"] = o.project;
  if (!o.description.empty()) body["description"] = o.description;
  if (!o.schema_file.empty()) {
    TAKT_ASSIGN_OR_RETURN(body["schema"], JsonFile(o.schema_file, "--schema"));
  }
  if (!o.features.empty()) {
    Json names = Json::array();
    std::string rest = o.features;
    while (true) {
      size_t comma = rest.find(',');
      names.push_back(rest.substr(0, comma));
      if (comma == std::string::npos) break;
      rest = rest.substr(comma + 1);
    }
    body["features"] = names;
  }
  if (!o.metrics_file.empty()) {
    TAKT_ASSIGN_OR_RETURN(body["metrics"], JsonFile(o.metrics_file, "--metrics"));
  }
  if (!o.params_file.empty()) {
    TAKT_ASSIGN_OR_RETURN(body["params"], JsonFile(o.params_file, "--params"));
  }
  if (!o.card_file.empty()) {
    TAKT_ASSIGN_OR_RETURN(body["card"], JsonFile(o.card_file, "--card"));
  }
  if (!o.sample_file.empty()) {
    TAKT_ASSIGN_OR_RETURN(body["sample_csv"], ReadFile(o.sample_file));
  }
  TAKT_ASSIGN_OR_RETURN(Json v,
                        ctx.Call("POST", Models(o.group) + "/versions", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(v), Ok();
  std::cout << "Registered " << Str(v, "group") << " v" << Str(v, "version") << " (" << Str(v, "status")
            << ", imported from " << fs::path(o.file).filename().string() << ", "
            << (Str(v, "artifact_format") == "ubj" ? "UBJSON" : "JSON") << ", " << v["schema"].size()
            << " features)\n"
            << "  another approver approves it with `takt model approve " << Str(v, "group") << " "
            << Str(v, "version") << "`\n";
  return Ok();
}

Status CmdDecide(Context& ctx, const ModelOptions& o, bool approve) {
  Json body = {{"comment", o.comment}};
  TAKT_ASSIGN_OR_RETURN(Json v, ctx.Call("POST", VersionPath(o) + (approve ? "/approve" : "/reject"),
                                         body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(v), Ok();
  std::cout << Str(v, "group") << " v" << Str(v, "version") << " is now " << Str(v, "status") << " (by "
            << Str(v, "decided_by") << ")\n";
  if (approve) {
    std::cout << "The release starts: it is deployed to the dev stage as endpoint " << o.group << "-dev\n";
  }
  return Ok();
}

Status CmdHistory(Context& ctx, const ModelOptions& o) {
  const std::string target = o.version.empty() ? Models(o.group) + "/history" : VersionPath(o) + "/history";
  TAKT_ASSIGN_OR_RETURN(Json h, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(h), Ok();
  PrintHistory(h, o.version.empty());
  return Ok();
}

Status CmdAliasSet(Context& ctx, const ModelOptions& o) {
  Json ref = o.version;
  if (!o.version.empty() && std::all_of(o.version.begin(), o.version.end(), ::isdigit)) {
    ref = std::stoll(o.version);
  }
  TAKT_ASSIGN_OR_RETURN(Json m, ctx.Call("PUT", Models(o.group) + "/aliases/" + Enc(o.alias),
                                         Json{{"version", ref}}.dump(), "application/json"));
  if (ctx.json()) return PrintJson(m), Ok();
  std::cout << o.group << " alias " << Str(m, "alias") << " → v" << Str(m, "version");
  if (!m["previous_version"].is_null()) std::cout << " (was v" << Str(m, "previous_version") << ")";
  std::cout << "\n";
  return Ok();
}

Status CmdAliasRemove(Context& ctx, const ModelOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json m, ctx.Call("DELETE", Models(o.group) + "/aliases/" + Enc(o.alias)));
  if (ctx.json()) return PrintJson(m), Ok();
  std::cout << "Removed alias " << o.alias << " of " << o.group << " (it named v"
            << Str(m, "previous_version") << ")\n";
  return Ok();
}

Status CmdUpdate(Context& ctx, const ModelOptions& o) {
  Json body = Json::object();
  if (o.description_given) body["description"] = o.description;
  if (!o.tags.empty()) {
    TAKT_ASSIGN_OR_RETURN(body["tags"], TagsJson(o.tags));
  }
  if (!o.remove_tags.empty()) body["remove_tags"] = o.remove_tags;
  if (body.empty())
    return InvalidArgument("nothing to update: give --description, --tag k=v or --remove-tag k");
  TAKT_ASSIGN_OR_RETURN(Json g, ctx.Call("PATCH", Models(o.group), body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(g), Ok();
  std::cout << "Updated model group " << Str(g, "name") << "\n";
  if (!Str(g, "description").empty()) std::cout << "  description: " << Str(g, "description") << "\n";
  std::cout << "  tags: " << (g["tags"].empty() ? "none" : TagsLine(g["tags"])) << "\n";
  return Ok();
}

Status CmdCard(Context& ctx, const ModelOptions& o) {
  if (!o.card_file.empty() && o.remove) return InvalidArgument("give either --file or --remove, not both");
  Json v;
  if (!o.card_file.empty()) {
    TAKT_ASSIGN_OR_RETURN(Json card, JsonFile(o.card_file, "--file"));
    TAKT_ASSIGN_OR_RETURN(v, ctx.Call("PUT", VersionPath(o) + "/card", card.dump(), "application/json"));
  } else if (o.remove) {
    TAKT_ASSIGN_OR_RETURN(v, ctx.Call("DELETE", VersionPath(o) + "/card"));
  } else {
    TAKT_ASSIGN_OR_RETURN(v, ctx.Call("GET", VersionPath(o)));
  }
  if (ctx.json()) return PrintJson(v["card"]), Ok();
  std::cout << "Model card of " << Str(v, "group") << " v" << Str(v, "version") << "\n";
  PrintCard(v["card"]);
  return Ok();
}

Status CmdDownload(Context& ctx, const ModelOptions& o) {
  TAKT_ASSIGN_OR_RETURN(http::Client * client, ctx.Client());
  TAKT_ASSIGN_OR_RETURN(http::ClientResponse r, client->Send("GET", VersionPath(o) + "/artifact"));
  if (r.status != 200) return std::unexpected(Context::ResponseError(r));
  std::string file = o.file;
  if (file.empty()) {
    // The server's name for it: <group>-v<N>.json or .ubj.
    const std::string cd =
        r.headers.contains("content-disposition") ? r.headers.at("content-disposition") : "";
    auto q = cd.find("filename=\"");
    if (q != std::string::npos) file = cd.substr(q + 10, cd.find('"', q + 10) - q - 10);
    if (file.empty() || file.find('/') != std::string::npos || file.starts_with("."))
      file = o.group + ".model";
  }
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  if (!out) return Unavailable("cannot write " + file + ": " + std::strerror(errno));
  out << r.body;
  out.close();
  if (!out) return Unavailable("cannot write " + file + ": " + std::strerror(errno));
  std::cerr << "Wrote " << file << " (" << HumanBytes(r.body.size()) << ", XGBoost "
            << (r.content_type == "application/ubjson" ? "UBJSON" : "JSON") << ")\n";
  return Ok();
}

}  // namespace

void AddModelCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                      const std::function<void(CLI::App*)>& output) {
  static ModelOptions o;  // bound by CLI11 for the life of the process
  auto* model = app.add_subcommand("model", "the model registry")->require_subcommand(1)->fallthrough();
  const char* kVersion = "version number or alias (e.g. 3, champion)";

  auto* list = model->add_subcommand("list", "model groups, their aliases and tags");
  list->add_option("--project", o.project, "only groups of this project");
  list->add_option("--tag", o.tags, "only groups with this tag, KEY=VALUE or KEY");
  output(list);
  list->callback(run([&] { return CmdList(ctx, o); }));

  auto* create = model->add_subcommand("create", "create an empty model group owned by a project");
  create->add_option("group", o.group, "model group")->required();
  create->add_option("--project", o.project, "owning project (default: the group's name)");
  create->add_option("--description", o.description, "what the models of this group are for");
  create->add_option("--tag", o.tags, "KEY=VALUE (repeatable)");
  output(create);
  create->callback(run([&] { return CmdCreate(ctx, o); }));

  auto* show =
      model->add_subcommand("show", "a group's versions, or one version: schema, metrics, card, history");
  show->add_option("group", o.group, "model group")->required();
  show->add_option("version", o.version, kVersion);
  output(show);
  show->callback(run([&] { return CmdShow(ctx, o); }));

  auto* search =
      model->add_subcommand("search", "versions across groups by project, status, tag, alias, metric");
  search->add_option("--group", o.group, "only this group");
  search->add_option("--project", o.project, "only groups of this project");
  search->add_option("--status", o.status, "PendingManualApproval, Approved or Rejected");
  search->add_option("--tag", o.tags, "the group carries this tag, KEY=VALUE or KEY");
  search->add_option("--alias", o.alias, "the version holds this alias");
  search->add_option("--metric", o.metrics, "a filter such as 'auc>=0.9' (repeatable: all must hold)");
  search->add_option("--sort", o.sort, "a metric (highest first; NAME:asc for lowest), version or created");
  search->add_option("--limit", o.limit, "at most this many")->capture_default_str();
  output(search);
  search->callback(run([&] { return CmdSearch(ctx, o); }));

  auto* reg = model->add_subcommand("register", "import a model trained elsewhere (XGBoost JSON or UBJSON)");
  reg->add_option("--file", o.file, "the model file")->required();
  reg->add_option("--group", o.group, "model group to register into")->required();
  reg->add_option("--framework", o.framework, "only xgboost")->capture_default_str();
  reg->add_option("--project", o.project, "owning project of a new group (default: the group's name)");
  auto* schema =
      reg->add_option("--schema", o.schema_file, "JSON [{\"name\", \"type\"}] (float, int, bool, category)");
  reg->add_option("--features", o.features, "feature names in order, comma-separated (all float)")
      ->excludes(schema);
  reg->add_option("--metrics", o.metrics_file, "JSON object of numbers, e.g. {\"auc\": 0.93}");
  reg->add_option("--params", o.params_file, "JSON object of training parameters");
  reg->add_option("--card", o.card_file, "model card: JSON {intended_use, limitations, training_data, ...}");
  reg->add_option("--sample", o.sample_file,
                  "CSV of up to 20 rows of the features (for release smoke tests)");
  reg->add_option("--description", o.description, "the group's description");
  output(reg);
  reg->callback(run([&] { return CmdRegister(ctx, o); }));

  for (bool approve : {true, false}) {
    auto* cmd =
        model->add_subcommand(approve ? "approve" : "reject",
                              approve ? "approve a version (starts its release)" : "reject a version");
    cmd->add_option("group", o.group, "model group")->required();
    cmd->add_option("version", o.version, kVersion)->required();
    cmd->add_option("--comment", o.comment, "why");
    output(cmd);
    cmd->callback(run([&, approve] { return CmdDecide(ctx, o, approve); }));
  }

  auto* history = model->add_subcommand("history", "who changed what and when: a version's, or the group's");
  history->add_option("group", o.group, "model group")->required();
  history->add_option("version", o.version, kVersion);
  output(history);
  history->callback(run([&] { return CmdHistory(ctx, o); }));

  auto* alias = model->add_subcommand("alias", "name versions: champion (Approved only), challenger, ...")
                    ->require_subcommand(1);
  auto* aset = alias->add_subcommand("set", "point an alias at a version");
  aset->add_option("group", o.group, "model group")->required();
  aset->add_option("alias", o.alias, "alias, [a-z][a-z0-9-]{0,31}")->required();
  aset->add_option("version", o.version, kVersion)->required();
  output(aset);
  aset->callback(run([&] { return CmdAliasSet(ctx, o); }));
  auto* arm = alias->add_subcommand("rm", "remove an alias");
  arm->add_option("group", o.group, "model group")->required();
  arm->add_option("alias", o.alias, "alias")->required();
  output(arm);
  arm->callback(run([&] { return CmdAliasRemove(ctx, o); }));

  auto* update = model->add_subcommand("update", "a group's description and tags");
  update->add_option("group", o.group, "model group")->required();
  update->add_option_function<std::string>(
      "--description",
      [&](const std::string& d) {
        o.description = d;
        o.description_given = true;
      },
      "new description");
  update->add_option("--tag", o.tags, "set KEY=VALUE (repeatable)");
  update->add_option("--remove-tag", o.remove_tags, "remove KEY (repeatable)");
  output(update);
  update->callback(run([&] { return CmdUpdate(ctx, o); }));

  auto* card = model->add_subcommand("card", "show a version's model card, or set it from a JSON file");
  card->add_option("group", o.group, "model group")->required();
  card->add_option("version", o.version, kVersion)->required();
  card->add_option("--file", o.card_file, "JSON {intended_use, limitations, training_data, ...} to set");
  card->add_flag("--remove", o.remove, "remove the card");
  output(card);
  card->callback(run([&] { return CmdCard(ctx, o); }));

  auto* download =
      model->add_subcommand("download", "download a version's model file (XGBoost JSON or UBJSON)");
  download->add_option("group", o.group, "model group")->required();
  download->add_option("version", o.version, kVersion)->required();
  download->add_option("-o,--file", o.file, "file to write (default: <group>-v<N>.json or .ubj)");
  download->callback(run([&] { return CmdDownload(ctx, o); }));
}

}  // namespace takt::cli
