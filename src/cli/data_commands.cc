// The data hub's commands: dataset ingest/export/stats/diff/tag/access,
// schedules, grants, groups, projects and lineage.
#include "cli/data_commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <filesystem>

#include "cli/context.h"
#include "cli/templates.h"
#include "frame/table.h"

namespace takt::cli {
namespace {

namespace fs = std::filesystem;

std::string Join(const Json& list, const char* sep = ",") {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& x : list)
    out += (out.empty() ? "" : sep) + (x.is_string() ? x.get<std::string>() : x.dump());
  return out;
}

// COL=VALUE → "COL:VALUE" as the API's query parameters take them.
Result<std::string> ColonPair(const std::string& text, const char* what) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq + 1 == text.size()) {
    return InvalidArgument(std::string(what) + " '" + text + "' must be COLUMN=VALUE");
  }
  return text.substr(0, eq) + ":" + text.substr(eq + 1);
}

struct IngestFlags {
  std::string file, format, delimiter, partition_by, on_error = "fail", description;
  std::vector<std::string> types, tags;
  bool append = false, allow_breaking = false;
  std::string from_file, from_dir, from_sqlite, from_postgres, query;
};

void PrintIngest(Context& ctx, const std::string& name, const Json& v) {
  if (ctx.json()) return PrintJson(v);
  if (!v.value("created", true)) {
    std::cout << name << " unchanged: the source holds the same data as v" << v.value("version", 0) << "\n";
    return;
  }
  std::cout << "Ingested " << name << " v" << v.value("version", 0) << ": " << v.value("rows", 0) << " rows, "
            << v["schema"].size() << " columns, " << HumanBytes(v.value("source_bytes", 0)) << " → "
            << HumanBytes(v.value("stored_bytes", 0)) << " encrypted in " << v.value("segments", 0)
            << " segment" << (v.value("segments", 0) == 1 ? "" : "s") << "\n";
  if (!v["written_partitions"].empty() && !Str(v, "partition_by").empty()) {
    std::cout << "  partitions written: " << Join(v["written_partitions"], ", ") << "\n";
  }
  if (!v["reused_partitions"].empty()) {
    std::cout << "  partitions kept from the previous version: " << Join(v["reused_partitions"], ", ")
              << "\n";
  }
  for (const auto& c : v["schema_changes"]) {
    std::cout << "  schema: " << Str(c, "kind") << " " << Str(c, "column")
              << (Str(c, "kind") == "retyped" ? " " + Str(c, "from") + " → " + Str(c, "to") : "") << "\n";
  }
  if (v.value("rows_skipped", 0) > 0) {
    std::cout << "  skipped " << v.value("rows_skipped", 0) << " malformed rows:\n";
    for (const auto& e : v["errors"]) std::cout << "    " << e.get<std::string>() << "\n";
  }
}

Status CmdIngest(Context& ctx, const std::string& name, const IngestFlags& f) {
  const int server_sources =
      !f.from_file.empty() + !f.from_dir.empty() + !f.from_sqlite.empty() + !f.from_postgres.empty();
  if (server_sources > 1)
    return InvalidArgument("give one of --from-file, --from-dir, --from-sqlite, --from-postgres");
  if (server_sources == 1 && !f.file.empty())
    return InvalidArgument("give either a local FILE to upload or a server-side --from-* source, not both");
  if (server_sources == 0 && f.file.empty())
    return InvalidArgument(
        "give a FILE to upload, or a server-side source (--from-file, --from-dir, --from-sqlite, "
        "--from-postgres)");

  if (server_sources == 1) {
    Json source;
    if (!f.from_file.empty()) source = {{"kind", "file"}, {"path", f.from_file}};
    if (!f.from_dir.empty()) source = {{"kind", "dir"}, {"path", f.from_dir}};
    if (!f.from_sqlite.empty()) source = {{"kind", "sqlite"}, {"path", f.from_sqlite}, {"query", f.query}};
    if (!f.from_postgres.empty())
      source = {{"kind", "postgres"}, {"url", f.from_postgres}, {"query", f.query}};
    Json options = {{"on_error", f.on_error},
                    {"append", f.append},
                    {"allow_breaking", f.allow_breaking},
                    {"partition_by", f.partition_by},
                    {"description", f.description}};
    if (!f.format.empty()) options["format"] = f.format;
    if (!f.delimiter.empty()) options["delimiter"] = f.delimiter == "tab" ? "\t" : f.delimiter;
    Json types = Json::object();
    for (const auto& t : f.types) {
      auto eq = t.find('=');
      if (eq == std::string::npos) return InvalidArgument("--type '" + t + "' must be COLUMN=TYPE");
      types[t.substr(0, eq)] = t.substr(eq + 1);
    }
    options["types"] = types;
    Json tags = Json::array();
    for (const auto& t : f.tags) {
      TAKT_ASSIGN_OR_RETURN(std::string pair, ColonPair(t, "--tag"));
      tags.push_back(pair);
    }
    options["tags"] = tags;
    if (!ctx.json())
      std::cerr << "Ingesting " << name << " on the server from " << source.value("kind", "") << " …\n";
    TAKT_ASSIGN_OR_RETURN(
        Json v, ctx.Call("POST", "/api/v1/datasets/" + Enc(name) + "/ingest",
                         Json{{"source", source}, {"options", options}}.dump(), "application/json"));
    PrintIngest(ctx, name, v);
    return Ok();
  }

  // A local file, streamed to the server: memory stays bounded on both sides.
  int fd = ::open(f.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("cannot read " + f.file + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  std::error_code ec;
  const uint64_t size = fs::file_size(f.file, ec);
  std::string format = f.format;
  if (format.empty()) format = (f.file.ends_with(".jsonl") || f.file.ends_with(".ndjson")) ? "jsonl" : "csv";
  std::string target = "/api/v1/datasets/" + Enc(name) +
                       "/versions?source=" + Enc(fs::path(f.file).filename().string()) +
                       "&format=" + Enc(format) + "&on_error=" + Enc(f.on_error);
  if (!f.description.empty()) target += "&description=" + Enc(f.description);
  if (!f.delimiter.empty()) target += "&delimiter=" + Enc(f.delimiter);
  if (!f.partition_by.empty()) target += "&partition_by=" + Enc(f.partition_by);
  if (f.append) target += "&append=true";
  if (f.allow_breaking) target += "&allow_breaking=true";
  for (const auto& t : f.types) {
    TAKT_ASSIGN_OR_RETURN(std::string pair, ColonPair(t, "--type"));
    target += "&type=" + Enc(pair);
  }
  for (const auto& t : f.tags) {
    TAKT_ASSIGN_OR_RETURN(std::string pair, ColonPair(t, "--tag"));
    target += "&tag=" + Enc(pair);
  }
  http::BodySource body;
  body.length = ec ? std::optional<uint64_t>() : std::optional<uint64_t>(size);
  body.read = [fd, &f](char* buf, size_t n) -> Result<size_t> {
    ssize_t got;
    do {
      got = ::read(fd, buf, n);
    } while (got < 0 && errno == EINTR);
    if (got < 0) return Unavailable("reading " + f.file + ": " + std::strerror(errno));
    return static_cast<size_t>(got);
  };
  Progress progress("ingest " + fs::path(f.file).filename().string());
  TAKT_ASSIGN_OR_RETURN(http::Client * client, ctx.Client());
  std::string reply;
  TAKT_ASSIGN_OR_RETURN(http::ClientResponse r,
                        client->SendStreaming(
                            "POST", target, &body, format == "csv" ? "text/csv" : "application/x-ndjson",
                            [&](size_t done, size_t total) { progress.Update(done, total); },
                            [&](std::string_view piece) -> Status {
                              reply.append(piece);
                              return Ok();
                            }));
  progress.Finish("");
  if (r.status < 200 || r.status >= 300) return std::unexpected(Context::ResponseError(r));
  TAKT_ASSIGN_OR_RETURN(Json v, ParseJson(reply, "server reply"));
  PrintIngest(ctx, name, v);
  return Ok();
}

Status CmdShow(Context& ctx, const std::string& name) {
  TAKT_ASSIGN_OR_RETURN(Json d, ctx.Call("GET", "/api/v1/datasets/" + Enc(name)));
  if (ctx.json()) return PrintJson(d), Ok();
  std::cout << "Dataset " << Str(d, "name") << " (owner " << Str(d, "owner") << ", created "
            << ShortTime(Str(d, "created_at")) << ")\n";
  if (!Str(d, "description").empty()) std::cout << "  " << Str(d, "description") << "\n";
  if (!d["tags"].empty()) std::cout << "  tags: " << Join(d["tags"], ", ") << "\n";
  std::cout << "\nVersions:\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : d["versions"]) {
    rows.push_back({Str(v, "version"), Str(v, "rows"), HumanBytes(v.value("source_bytes", 0)),
                    HumanBytes(v.value("stored_bytes", 0)), Str(v, "content_hash").substr(0, 12),
                    Str(v, "partition_by"), Str(v, "source"), Str(v, "created_by"),
                    ShortTime(Str(v, "created_at"))});
  }
  PrintTable({"VERSION", "ROWS", "SOURCE SIZE", "STORED", "CONTENT", "PARTITIONS", "SOURCE", "BY", "CREATED"},
             rows);
  if (!d["versions"].empty()) {
    const Json& latest = d["versions"].back();
    std::cout << "\nSchema of v" << Str(latest, "version") << ":\n";
    std::vector<std::vector<std::string>> fields;
    for (const auto& f : latest["schema"]) {
      std::string tags;
      if (d["column_tags"].contains(Str(f, "name"))) tags = Join(d["column_tags"][Str(f, "name")], ", ");
      fields.push_back({Str(f, "name"), Str(f, "type"), f.value("nullable", false) ? "yes" : "no", tags});
    }
    PrintTable({"COLUMN", "TYPE", "NULLABLE", "TAGS"}, fields);
  }
  return Ok();
}

std::string ReadQuery(int version, const std::string& columns, const std::string& where) {
  std::string q;
  if (version > 0) q += "&version=" + std::to_string(version);
  if (!columns.empty()) q += "&columns=" + Enc(columns);
  if (!where.empty()) q += "&where=" + Enc(where);
  return q;
}

Status CmdHead(Context& ctx, const std::string& name, int n, int version, const std::string& columns,
               const std::string& where) {
  TAKT_ASSIGN_OR_RETURN(Json t, ctx.Call("GET", "/api/v1/datasets/" + Enc(name) + "/rows?limit=" +
                                                    std::to_string(n) + ReadQuery(version, columns, where)));
  if (ctx.json()) return PrintJson(t), Ok();
  PrintRows(t);
  return Ok();
}

Status CmdExport(Context& ctx, const std::string& name, const std::string& file, const std::string& format,
                 int version, const std::string& columns, const std::string& where) {
  if (format != "csv" && format != "jsonl") return InvalidArgument("--format must be csv or jsonl");
  std::string target =
      "/api/v1/datasets/" + Enc(name) + "/export?format=" + format + ReadQuery(version, columns, where);
  const bool to_stdout = file.empty() || file == "-";
  std::string tmp = to_stdout ? "" : file + ".part";
  std::ofstream out;
  if (!to_stdout) {
    out.open(tmp, std::ios::trunc | std::ios::binary);
    if (!out) return Unavailable("cannot write " + tmp);
  }
  uint64_t bytes = 0, lines = 0;
  Progress progress("export " + name);
  TAKT_ASSIGN_OR_RETURN(http::Client * client, ctx.Client());
  auto r = client->SendStreaming("GET", target, nullptr, "", {}, [&](std::string_view piece) -> Status {
    bytes += piece.size();
    lines += static_cast<uint64_t>(std::count(piece.begin(), piece.end(), '\n'));
    if (to_stdout) {
      std::cout.write(piece.data(), static_cast<std::streamsize>(piece.size()));
    } else {
      out.write(piece.data(), static_cast<std::streamsize>(piece.size()));
      if (!out) return Unavailable("writing " + tmp + " failed");
      progress.Update(bytes, 0);
    }
    return Ok();
  });
  if (!r) {
    if (!to_stdout) fs::remove(tmp);
    return std::unexpected(r.error().WithContext("the export broke off"));
  }
  if (r->status < 200 || r->status >= 300) {
    if (!to_stdout) fs::remove(tmp);
    return std::unexpected(Context::ResponseError(*r));
  }
  if (!to_stdout) {
    out.close();
    std::error_code ec;
    fs::rename(tmp, file, ec);
    if (ec) return Unavailable("cannot rename " + tmp + ": " + ec.message());
    progress.Finish("");
    const uint64_t rows = format == "csv" && lines > 0 ? lines - 1 : lines;
    std::cerr << "Wrote " << file << ": " << rows << " rows (" << HumanBytes(bytes) << ")\n";
  }
  return Ok();
}

std::string FormatStat(const Json& c, const char* key) {
  if (!c.contains(key) || c[key].is_null()) return "";
  if (Str(c, "type") == "timestamp") {
    return frame::FormatTimestamp(static_cast<int64_t>(c[key].get<double>())).substr(0, 16);
  }
  double v = c[key].get<double>();
  if (std::fabs(v) >= 1e6 || (v != 0 && std::fabs(v) < 1e-3)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  return Num(v, std::fabs(v) >= 100 ? 1 : 3);
}

// A little histogram, for people who would rather look than read.
std::string Spark(const Json& hist) {
  static const char* kBars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  if (!hist.is_array() || hist.empty()) return "";
  int64_t top = 0;
  for (const auto& b : hist) top = std::max<int64_t>(top, b.value("count", int64_t{0}));
  std::string out;
  for (const auto& b : hist) {
    int64_t c = b.value("count", int64_t{0});
    out += top == 0 ? kBars[0] : kBars[std::min<int64_t>(7, c * 7 / top)];
  }
  return out;
}

Status CmdStats(Context& ctx, const std::string& name, int version) {
  std::string target = "/api/v1/datasets/" + Enc(name) + "/stats";
  if (version > 0) target += "?version=" + std::to_string(version);
  TAKT_ASSIGN_OR_RETURN(Json s, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(s), Ok();
  std::cout << Str(s, "dataset") << " v" << Str(s, "version") << ": " << Str(s, "rows") << " rows"
            << (s.value("filtered", false) ? " visible to you (statistics computed over them now)" : "")
            << "\n\n";
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<std::string>> cats;
  for (const auto& c : s["columns"]) {
    const std::string type = Str(c, "type");
    const int64_t count = c.value("count", int64_t{0});
    const int64_t nulls = c.value("nulls", int64_t{0});
    std::string null_pct =
        count > 0 ? Num(100.0 * static_cast<double>(nulls) / static_cast<double>(count), 1) + "%" : "";
    std::string p50, p05, p95;
    for (const auto& q : c.value("quantiles", Json::array())) {
      double qq = q.value("q", 0.0);
      Json wrap = {{"type", type}, {"v", q.value("value", 0.0)}};
      if (std::fabs(qq - 0.5) < 1e-9) p50 = FormatStat(wrap, "v");
      if (std::fabs(qq - 0.05) < 1e-9) p05 = FormatStat(wrap, "v");
      if (std::fabs(qq - 0.95) < 1e-9) p95 = FormatStat(wrap, "v");
    }
    bool masked = false;
    for (const auto& m : s["masked"])
      if (m == c["name"]) masked = true;
    rows.push_back({Str(c, "name"), type + (masked ? " (masked)" : ""), null_pct, Str(c, "distinct"),
                    FormatStat(c, "min"), p05, p50, FormatStat(c, "mean"), p95, FormatStat(c, "max"),
                    FormatStat(c, "stddev"), Spark(c.value("histogram", Json::array()))});
    if (c.contains("top") && !c["top"].empty() && (type == "string" || type == "bool")) {
      std::string top;
      int shown = 0;
      for (const auto& t : c["top"]) {
        if (shown++ == 5) break;
        top += (top.empty() ? "" : ", ") + Str(t, "value") + " (" + Str(t, "count") + ")";
      }
      cats.push_back({Str(c, "name"), top});
    }
  }
  PrintTable({"COLUMN", "TYPE", "NULLS", "DISTINCT", "MIN", "P5", "MEDIAN", "MEAN", "P95", "MAX", "STDDEV",
              "HISTOGRAM"},
             rows);
  if (!cats.empty()) {
    std::cout << "\nMost frequent values:\n";
    PrintTable({"COLUMN", "TOP VALUES (COUNT)"}, cats);
  }
  if (!s["masked"].empty()) {
    std::cout << "\nMasked for you: " << Join(s["masked"], ", ") << " (counts only)\n";
  }
  return Ok();
}

Status CmdDiff(Context& ctx, const std::string& name, int from, int to) {
  TAKT_ASSIGN_OR_RETURN(Json d, ctx.Call("GET", "/api/v1/datasets/" + Enc(name) + "/diff?from=" +
                                                    std::to_string(from) + "&to=" + std::to_string(to)));
  if (ctx.json()) return PrintJson(d), Ok();
  if (d["changes"].empty()) {
    std::cout << "No schema change.\n";
    return Ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : d["changes"]) {
    rows.push_back({Str(c, "column"), Str(c, "kind"), Str(c, "from"), Str(c, "to"),
                    c.value("breaking", false) ? "BREAKING" : "compatible"});
  }
  PrintTable({"COLUMN", "CHANGE", "FROM", "TO", ""}, rows);
  return Ok();
}

Status CmdTag(Context& ctx, const std::string& name, const std::vector<std::string>& tags,
              const std::string& column, bool remove) {
  Json list = Json::array();
  for (const auto& t : tags) list.push_back({{"column", column}, {"tag", t}});
  TAKT_ASSIGN_OR_RETURN(Json d,
                        ctx.Call("POST", "/api/v1/datasets/" + Enc(name) + "/tags",
                                 Json{{"tags", list}, {"remove", remove}}.dump(), "application/json"));
  if (ctx.json()) return PrintJson(d), Ok();
  std::cout << (remove ? "Removed " : "Tagged ") << (column.empty() ? name : name + "." + column) << " "
            << (remove ? "tags " : "with ") <<
      [&] {
        std::string s;
        for (const auto& t : tags) s += (s.empty() ? "" : ", ") + t;
        return s;
      }() << "\n";
  return Ok();
}

Status CmdUpdate(Context& ctx, const std::string& name, const std::string& description,
                 const std::string& owner) {
  Json body = Json::object();
  if (!description.empty()) body["description"] = description;
  if (!owner.empty()) body["owner"] = owner;
  if (body.empty()) return InvalidArgument("give --description or --owner");
  TAKT_ASSIGN_OR_RETURN(Json d,
                        ctx.Call("PATCH", "/api/v1/datasets/" + Enc(name), body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(d), Ok();
  std::cout << "Updated " << name << " (owner " << Str(d, "owner") << ")\n";
  return Ok();
}

Status CmdAccess(Context& ctx, const std::string& name, const std::string& as, int version) {
  std::string target = "/api/v1/datasets/" + Enc(name) + "/access?version=" + std::to_string(version);
  if (!as.empty()) target += "&principal=" + Enc(as);
  TAKT_ASSIGN_OR_RETURN(Json a, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(a), Ok();
  std::cout << Str(a, "principal") << " on " << Str(a, "dataset") << " v" << Str(a, "version") << ": "
            << (a.value("owner", false) ? "owner (reads everything)" : "grants " + Join(a["grants"], ", "))
            << "\n";
  std::cout << "  rows: "
            << (a["row_filter"].is_null() ? "all" : "where " + a["row_filter"].get<std::string>()) << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : a["columns"]) {
    rows.push_back({Str(c, "name"), Str(c, "type"), Str(c, "mask").empty() ? "-" : Str(c, "mask"),
                    Str(c, "mask_grant")});
  }
  PrintTable({"COLUMN", "AS TYPE", "MASK", "BY GRANT"}, rows);
  for (const auto& n : a["notes"]) std::cout << "  note: " << n.get<std::string>() << "\n";
  return Ok();
}

// ---------------------------------------------------------------- grants

struct GrantFlags {
  std::string to, dataset, columns, exclude, where, note;
  std::vector<std::string> masks;
};

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size() && !s.empty()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    if (comma > pos) out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

Status CmdGrant(Context& ctx, const std::string& effect, const GrantFlags& f) {
  Json body = {{"effect", effect},
               {"subject", f.to},
               {"dataset", f.dataset},
               {"columns", SplitList(f.columns)},
               {"exclude", SplitList(f.exclude)},
               {"row_filter", f.where},
               {"note", f.note}};
  Json masks = Json::object();
  for (const auto& m : f.masks) {
    auto eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
      return InvalidArgument("--mask '" + m +
                             "' must be COLUMN=MASK or tag:TAG=MASK (e.g. robot_serial=hash)");
    }
    masks[m.substr(0, eq)] = m.substr(eq + 1);
  }
  body["masks"] = masks;
  TAKT_ASSIGN_OR_RETURN(Json g, ctx.Call("POST", "/api/v1/grants", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(g), Ok();
  std::cout << "Created grant " << Str(g, "id") << ": " << effect << " " << Str(g, "subject") << " on "
            << Str(g, "dataset") << "\n";
  return Ok();
}

Status CmdGrantList(Context& ctx, const std::string& dataset, const std::string& subject) {
  std::string target = "/api/v1/grants?";
  if (!dataset.empty()) target += "dataset=" + Enc(dataset) + "&";
  if (!subject.empty()) target += "subject=" + Enc(subject);
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : r) {
    std::string cols = g["columns"].empty() ? "all" : Join(g["columns"]);
    if (!g["exclude"].empty()) cols += " except " + Join(g["exclude"]);
    if (Str(g, "effect") == "mask") cols = "-";
    std::string masks;
    for (const auto& [k, v] : g["masks"].items())
      masks += (masks.empty() ? "" : ", ") + k + "=" + v.get<std::string>();
    rows.push_back({Str(g, "id"), Str(g, "effect"), Str(g, "subject"), Str(g, "dataset"), cols,
                    Str(g, "row_filter"), masks, Str(g, "created_by")});
  }
  PrintTable({"GRANT", "EFFECT", "SUBJECT", "DATASET", "COLUMNS", "ROWS WHERE", "MASKS", "BY"}, rows);
  return Ok();
}

// ---------------------------------------------------------------- groups and projects

Status CmdMembers(Context& ctx, const std::string& kind, const std::string& name,
                  const std::string& principal, bool remove) {
  TAKT_ASSIGN_OR_RETURN(
      Json r, ctx.Call("POST", "/api/v1/" + kind + "s/" + Enc(name) + "/members",
                       Json{{"principal", principal}, {"remove", remove}}.dump(), "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::cout << (remove ? "Removed " : "Added ") << principal << (remove ? " from " : " to ") << kind << " "
            << name << "\n";
  return Ok();
}

Status CmdLineage(Context& ctx, const std::string& node, const std::string& direction) {
  TAKT_ASSIGN_OR_RETURN(Json g,
                        ctx.Call("GET", "/api/v1/lineage?node=" + Enc(node) + "&direction=" + direction));
  if (ctx.json()) return PrintJson(g), Ok();
  const std::string start = Str(g, "node");
  if (g["edges"].empty()) {
    std::cout << "No lineage recorded for " << start << " yet.\n";
    return Ok();
  }
  // Downstream first (what was made of it), then upstream (what is behind it).
  std::map<std::string, std::vector<const Json*>> down, up;
  for (const auto& e : g["edges"]) {
    down[Str(e, "from")].push_back(&e);
    up[Str(e, "to")].push_back(&e);
  }
  auto label = [](const Json& e) { return Str(e, "label").empty() ? "" : " [" + Str(e, "label") + "]"; };
  std::set<std::string> printed;
  std::function<void(const std::string&, int, bool)> walk = [&](const std::string& node, int depth,
                                                                bool downward) {
    auto& m = downward ? down : up;
    auto it = m.find(node);
    if (it == m.end() || depth > 12) return;
    for (const Json* e : it->second) {
      const std::string next = downward ? Str(*e, "to") : Str(*e, "from");
      std::cout << std::string(static_cast<size_t>(2 * depth), ' ') << (downward ? "└─ " : "└← ")
                << Str(*e, "relation") << " " << next << label(*e) << "\n";
      if (printed.insert((downward ? "d" : "u") + next).second) walk(next, depth + 1, downward);
    }
  };
  std::vector<std::string> roots = {start};
  if (start.find('@') == std::string::npos) {
    for (const auto& [k, _] : down)
      if (k.rfind(start + "@", 0) == 0) roots.push_back(k);
    for (const auto& [k, _] : up)
      if (k.rfind(start + "@", 0) == 0 && std::find(roots.begin(), roots.end(), k) == roots.end())
        roots.push_back(k);
  }
  for (const auto& root : roots) {
    if (!down.count(root) && !up.count(root)) continue;
    std::cout << root << "\n";
    if (direction != "up" && down.count(root)) {
      std::cout << "  downstream:\n";
      walk(root, 2, true);
    }
    if (direction != "down" && up.count(root)) {
      std::cout << "  upstream:\n";
      walk(root, 2, false);
    }
  }
  return Ok();
}

}  // namespace

void AddDataCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                     const std::function<void(CLI::App*)>& output) {
  auto* dataset = app.get_subcommand("dataset");

  // dataset ingest
  static IngestFlags ingest;
  static std::string name;
  auto* di = dataset->add_subcommand(
      "ingest", "a new immutable, encrypted version from a file, a directory or a database");
  di->add_option("name", name, "dataset name")->required();
  di->add_option("file", ingest.file, "local CSV or JSON Lines file to upload (streamed)");
  di->add_option("--format", ingest.format, "csv or jsonl (default: from the file name)");
  di->add_option("--delimiter", ingest.delimiter, "CSV field delimiter (one character, or 'tab')");
  di->add_option("--type", ingest.types,
                 "declare a column's type: COLUMN=int64|float64|string|bool|timestamp (repeatable)");
  di->add_option("--tag", ingest.tags,
                 "tag a column in the same step: COLUMN=TAG, e.g. robot_serial=pii (repeatable)");
  di->add_option("--partition-by", ingest.partition_by,
                 "partition by a column, or COLUMN:day|hour|month|year");
  di->add_flag("--append", ingest.append, "keep the previous version's other partitions (or rows)");
  di->add_flag("--allow-breaking", ingest.allow_breaking, "accept removed or retyped columns");
  di->add_option("--on-error", ingest.on_error, "fail (default) or skip malformed rows")
      ->check(CLI::IsMember({"fail", "skip"}));
  di->add_option("--description", ingest.description, "what the dataset holds");
  di->add_option("--from-file", ingest.from_file, "server-side file under the landing directory");
  di->add_option("--from-dir", ingest.from_dir, "server-side directory: one partition per file");
  di->add_option("--from-sqlite", ingest.from_sqlite, "server-side SQLite database (with --query)");
  di->add_option("--from-postgres", ingest.from_postgres, "PostgreSQL connection URL (with --query)");
  di->add_option("--query", ingest.query, "SQL query for --from-sqlite / --from-postgres");
  output(di);
  di->callback(run([&ctx]() -> Status { return CmdIngest(ctx, name, ingest); }));

  auto* ds = dataset->add_subcommand("show", "versions, tags and schema of a dataset");
  ds->add_option("name", name, "dataset name")->required();
  output(ds);
  ds->callback(run([&ctx]() -> Status { return CmdShow(ctx, name); }));

  static int n = 10, version = 0, from = 0, to = 0;
  static std::string columns, where, file, format = "csv", as, column, description, owner;
  auto* dh = dataset->add_subcommand("head", "the first rows you may see (an audited, governed read)");
  dh->add_option("name", name, "dataset name")->required();
  dh->add_option("-n", n, "rows")->capture_default_str();
  dh->add_option("--version", version, "version (default latest)");
  dh->add_option("--columns", columns, "comma-separated columns (default: all granted)");
  dh->add_option("--where", where, "your own row filter, e.g. \"plant = 'P1' AND force_kn > 3\"");
  output(dh);
  dh->callback(run([&ctx]() -> Status { return CmdHead(ctx, name, n, version, columns, where); }));

  auto* de = dataset->add_subcommand("export",
                                     "download the rows you may see, streamed (an audited, governed read)");
  de->add_option("name", name, "dataset name")->required();
  de->add_option("--file", file, "file to write (default stdout)");
  de->add_option("--format", format, "csv or jsonl")->capture_default_str();
  de->add_option("--version", version, "version (default latest)");
  de->add_option("--columns", columns, "comma-separated columns");
  de->add_option("--where", where, "your own row filter");
  de->callback(
      run([&ctx]() -> Status { return CmdExport(ctx, name, file, format, version, columns, where); }));

  auto* dst = dataset->add_subcommand("stats", "per-column statistics of a version (governed)");
  dst->add_option("name", name, "dataset name")->required();
  dst->add_option("--version", version, "version (default latest)");
  output(dst);
  dst->callback(run([&ctx]() -> Status { return CmdStats(ctx, name, version); }));

  auto* dd = dataset->add_subcommand("diff", "schema changes between two versions");
  dd->add_option("name", name, "dataset name")->required();
  dd->add_option("--from", from, "older version (default: the one before --to)");
  dd->add_option("--to", to, "newer version (default latest)");
  output(dd);
  dd->callback(run([&ctx]() -> Status { return CmdDiff(ctx, name, from, to); }));

  static std::vector<std::string> tags;
  static bool remove = false;
  auto* dt = dataset->add_subcommand("tag", "tag a dataset or one of its columns (e.g. pii)");
  dt->add_option("name", name, "dataset name")->required();
  dt->add_option("tags", tags, "tags")->required();
  dt->add_option("--column", column, "the column to tag (default: the dataset itself)");
  dt->add_flag("--remove", remove, "remove the tags instead");
  output(dt);
  dt->callback(run([&ctx]() -> Status { return CmdTag(ctx, name, tags, column, remove); }));

  auto* du = dataset->add_subcommand("update", "change a dataset's description or owner");
  du->add_option("name", name, "dataset name")->required();
  du->add_option("--description", description, "new description");
  du->add_option("--owner", owner, "new owner (a principal)");
  output(du);
  du->callback(run([&ctx]() -> Status { return CmdUpdate(ctx, name, description, owner); }));

  auto* da =
      dataset->add_subcommand("access", "explain what you (or --as someone) may read: columns, masks, rows");
  da->add_option("name", name, "dataset name")->required();
  da->add_option("--as", as, "another principal (needs grant:list)");
  da->add_option("--version", version, "version (default latest)");
  output(da);
  da->callback(run([&ctx]() -> Status { return CmdAccess(ctx, name, as, version); }));

  // dataset schedule
  auto* dsch =
      dataset->add_subcommand("schedule", "scheduled ingest from server-side sources")->require_subcommand(1);
  static std::string cron, schedule_id;
  auto* sc =
      dsch->add_subcommand("create", "ingest on a cron schedule; a new version only when the data changed");
  sc->add_option("name", name, "dataset name")->required();
  sc->add_option("--cron", cron, "cron expression in UTC, e.g. \"0 * * * *\" or @hourly")->required();
  sc->add_option("--from-file", ingest.from_file, "server-side file under the landing directory");
  sc->add_option("--from-dir", ingest.from_dir, "server-side directory");
  sc->add_option("--from-sqlite", ingest.from_sqlite, "server-side SQLite database");
  sc->add_option("--from-postgres", ingest.from_postgres, "PostgreSQL connection URL (stored encrypted)");
  sc->add_option("--query", ingest.query, "SQL query");
  sc->add_option("--format", ingest.format, "csv or jsonl");
  sc->add_option("--partition-by", ingest.partition_by, "partition expression");
  sc->add_flag("--append", ingest.append, "append partitions");
  sc->add_option("--on-error", ingest.on_error, "fail or skip")->check(CLI::IsMember({"fail", "skip"}));
  output(sc);
  sc->callback(run([&ctx]() -> Status {
    Json source;
    if (!ingest.from_file.empty()) source = {{"kind", "file"}, {"path", ingest.from_file}};
    if (!ingest.from_dir.empty()) source = {{"kind", "dir"}, {"path", ingest.from_dir}};
    if (!ingest.from_sqlite.empty())
      source = {{"kind", "sqlite"}, {"path", ingest.from_sqlite}, {"query", ingest.query}};
    if (!ingest.from_postgres.empty())
      source = {{"kind", "postgres"}, {"url", ingest.from_postgres}, {"query", ingest.query}};
    if (source.is_null())
      return (InvalidArgument("give a source: --from-file, --from-dir, --from-sqlite or --from-postgres"));
    Json options = {
        {"on_error", ingest.on_error}, {"append", ingest.append}, {"partition_by", ingest.partition_by}};
    if (!ingest.format.empty()) options["format"] = ingest.format;
    TAKT_ASSIGN_OR_RETURN(
        Json s,
        ctx.Call("POST", "/api/v1/datasets/" + Enc(name) + "/schedules",
                 Json{{"cron", cron}, {"source", source}, {"options", options}}.dump(), "application/json"));
    if (ctx.json()) return PrintJson(s), Ok();
    std::cout << "Created schedule " << Str(s, "id") << " for " << name << " (" << Str(s, "cron")
              << ", next run " << frame::FormatTimestamp(s.value("next_run", int64_t{0})) << ")\n";
    return Ok();
  }));
  auto* sl = dsch->add_subcommand("list", "ingest schedules");
  output(sl);
  sl->callback(run([&ctx]() -> Status {
    TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/schedules"));
    if (ctx.json()) return PrintJson(r), Ok();
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : r) {
      rows.push_back({Str(s, "id"), Str(s, "dataset"), Str(s, "cron"), Str(s, "source"),
                      frame::FormatTimestamp(s.value("next_run", int64_t{0})),
                      ShortTime(Str(s, "last_run_at")), Str(s, "last_status")});
    }
    PrintTable({"SCHEDULE", "DATASET", "CRON", "SOURCE", "NEXT RUN", "LAST RUN", "LAST STATUS"}, rows);
    return Ok();
  }));
  auto* sr = dsch->add_subcommand("run", "run a schedule now");
  sr->add_option("id", schedule_id, "schedule id")->required();
  output(sr);
  sr->callback(run([&ctx]() -> Status {
    TAKT_ASSIGN_OR_RETURN(
        Json v, ctx.Call("POST", "/api/v1/schedules/" + Enc(schedule_id) + "/run", "{}", "application/json"));
    PrintIngest(ctx, Str(v, "dataset"), v);
    return Ok();
  }));
  auto* sd = dsch->add_subcommand("delete", "delete a schedule");
  sd->add_option("id", schedule_id, "schedule id")->required();
  sd->callback(run([&ctx]() -> Status {
    TAKT_RETURN_IF_ERROR(ctx.Call("DELETE", "/api/v1/schedules/" + Enc(schedule_id)));
    std::cout << "Deleted schedule " << schedule_id << "\n";
    return Ok();
  }));

  // grant
  auto* grant =
      app.add_subcommand("grant", "who may read which columns and rows of which datasets, masked how")
          ->require_subcommand(1);
  static GrantFlags gf;
  auto grant_options = [&](CLI::App* cmd, bool columns, bool rows_and_masks) {
    cmd->add_option("--to", gf.to, "principal:NAME, group:NAME, project:NAME, or * (everyone but the owner)")
        ->required();
    cmd->add_option("--dataset", gf.dataset,
                    "a dataset, tag:TAG (every dataset with the tag, now and later), or *")
        ->required();
    if (columns) {
      cmd->add_option("--columns", gf.columns, "comma-separated columns or tag:TAG (default all)");
      cmd->add_option("--exclude", gf.exclude, "comma-separated columns or tag:TAG to leave out");
    }
    if (rows_and_masks) {
      cmd->add_option("--where", gf.where, "row filter, e.g. \"plant IN ('P1', 'P2') AND force_kn > 0\"");
      cmd->add_option("--mask", gf.masks,
                      "COLUMN=MASK or tag:TAG=MASK; hash, redact[:TEXT], null, partial:N, "
                      "generalize:N|hour|day|month|year")
          ->expected(1);
    }
    cmd->add_option("--note", gf.note, "why");
    output(cmd);
  };
  auto* gc = grant->add_subcommand("create", "allow reading a dataset (columns, rows, masks)");
  grant_options(gc, true, true);
  gc->callback(run([&ctx]() -> Status { return CmdGrant(ctx, "allow", gf); }));
  auto* gd = grant->add_subcommand("deny", "deny a dataset or some of its columns (a deny wins)");
  grant_options(gd, true, false);
  gd->callback(run([&ctx]() -> Status { return CmdGrant(ctx, "deny", gf); }));
  auto* gm = grant->add_subcommand("mask", "mask columns wherever they are read, e.g. --mask tag:pii=hash");
  gm->add_option("--to", gf.to, "subject, or * for everyone but the owner")->default_val("*");
  gm->add_option("--dataset", gf.dataset, "a dataset, tag:TAG or *")->default_val("*");
  gm->add_option("--mask", gf.masks, "COLUMN=MASK or tag:TAG=MASK")->required();
  gm->add_option("--note", gf.note, "why");
  output(gm);
  gm->callback(run([&ctx]() -> Status { return CmdGrant(ctx, "mask", gf); }));
  static std::string grant_dataset, grant_subject, grant_id;
  auto* gl = grant->add_subcommand("list", "grants, deny and mask rules");
  gl->add_option("--dataset", grant_dataset, "only rules naming this dataset (or tag:TAG)");
  gl->add_option("--to", grant_subject, "only rules for this subject");
  output(gl);
  gl->callback(run([&ctx]() -> Status { return CmdGrantList(ctx, grant_dataset, grant_subject); }));
  auto* gdel = grant->add_subcommand("revoke", "delete a grant or rule");
  gdel->add_option("id", grant_id, "grant id")->required();
  gdel->callback(run([&ctx]() -> Status {
    TAKT_RETURN_IF_ERROR(ctx.Call("DELETE", "/api/v1/grants/" + Enc(grant_id)));
    std::cout << "Revoked " << grant_id << "\n";
    return Ok();
  }));

  // group and project
  static std::vector<std::string> members;
  static std::string subject_name, member, project_description;
  static std::string project_template, project_dir, project_dataset = "weld-telemetry";
  for (const char* kind_c : {"group", "project"}) {
    const std::string kind = kind_c;
    auto* cmd =
        app.add_subcommand(kind, kind == "group" ? "groups of principals (subjects of grants)"
                                                 : "ML use cases: members, a service identity, grants")
            ->require_subcommand(1);
    auto* c = cmd->add_subcommand("create", "create a " + kind);
    c->add_option("name", subject_name, kind + " name")->required();
    c->add_option("--member", members, "principal (repeatable)");
    if (kind == "project") {
      c->add_option("--description", project_description, "the use case");
      auto* tpl =
          c->add_option("--template", project_template,
                        "also lay out the project's files from a template (`takt project templates`)");
      c->add_option("--dir", project_dir, "with --template: the directory to write (default ./NAME)")
          ->needs(tpl);
      c->add_option("--dataset", project_dataset, "with --template: the dataset its pipelines read")
          ->capture_default_str()
          ->needs(tpl);
    }
    output(c);
    c->callback(run([&ctx, kind]() -> Status {
      // A template is checked and rendered before anything is created, so bad input changes nothing.
      std::vector<TemplateFile> files;
      const std::string dir = project_dir.empty() ? subject_name : project_dir;
      if (kind == "project" && !project_template.empty()) {
        TAKT_ASSIGN_OR_RETURN(const ProjectTemplate* t, FindTemplate(project_template));
        TAKT_RETURN_IF_ERROR(CheckProjectDirectory(dir));
        TAKT_ASSIGN_OR_RETURN(files, RenderTemplate(*t, TemplateValues(subject_name, project_dataset)));
      }
      Json body = {{"name", subject_name}, {"members", members}};
      if (kind == "project") body["description"] = project_description;
      TAKT_ASSIGN_OR_RETURN(Json r,
                            ctx.Call("POST", "/api/v1/" + kind + "s", body.dump(), "application/json"));
      std::vector<std::string> written;
      if (!files.empty()) {
        auto w = WriteProjectFiles(dir, files);
        if (!w) {
          return std::unexpected(w.error().WithContext("project " + subject_name +
                                                       " was created, but its template files were not "
                                                       "written"));
        }
        written = std::move(*w);
      }
      if (ctx.json()) {
        if (!files.empty()) r["template"] = {{"name", project_template}, {"dir", dir}, {"files", written}};
        return PrintJson(r), Ok();
      }
      std::cout << "Created " << kind << " " << Str(r, "name") << " with members "
                << Join(r["members"], ", ");
      if (kind == "project") std::cout << "; its pipelines read data as " << Str(r, "service_principal");
      std::cout << "\n";
      if (!files.empty()) {
        std::cout << "Wrote " << written.size() << " files of template " << project_template << " into "
                  << dir << ":\n";
        for (const auto& f : files) std::cout << "  " << f.path << "\n";
        std::cout << "Next: " << (fs::path(dir) / "README.md").string()
                  << " (upload data, grant the project, takt pipeline run pipeline.yaml)\n";
      }
      return Ok();
    }));
    if (kind == "project") {
      auto* tl = cmd->add_subcommand("templates", "the templates `project create --template` lays out");
      output(tl);
      tl->callback(run([&ctx]() -> Status {
        Json list = Json::array();
        std::vector<std::vector<std::string>> rows;
        for (const auto& t : Templates()) {
          Json paths = Json::array();
          for (const auto& f : t.files) paths.push_back(f.path);
          list.push_back({{"name", t.name}, {"description", t.description}, {"files", paths}});
          rows.push_back({t.name, t.description});
        }
        if (ctx.json()) return PrintJson(list), Ok();
        PrintTable({"TEMPLATE", "DESCRIPTION"}, rows);
        return Ok();
      }));
    }
    auto* l = cmd->add_subcommand("list", "list " + kind + "s");
    output(l);
    l->callback(run([&ctx, kind]() -> Status {
      TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/" + kind + "s"));
      if (ctx.json()) return PrintJson(r), Ok();
      std::vector<std::vector<std::string>> rows;
      for (const auto& x : r) {
        if (kind == "project") {
          rows.push_back(
              {Str(x, "name"), Join(x["members"], ", "), Str(x, "service_principal"), Str(x, "description")});
        } else {
          rows.push_back({Str(x, "name"), Join(x["members"], ", "), Str(x, "created_by")});
        }
      }
      if (kind == "project") {
        PrintTable({"PROJECT", "MEMBERS", "SERVICE IDENTITY", "DESCRIPTION"}, rows);
      } else {
        PrintTable({"GROUP", "MEMBERS", "CREATED BY"}, rows);
      }
      return Ok();
    }));
    for (bool rm : {false, true}) {
      auto* m =
          cmd->add_subcommand(rm ? "remove-member" : "add-member", rm ? "remove a member" : "add a member");
      m->add_option("name", subject_name, kind)->required();
      m->add_option("principal", member, "principal")->required();
      output(m);
      m->callback(
          run([&ctx, kind, rm]() -> Status { return CmdMembers(ctx, kind, subject_name, member, rm); }));
    }
  }

  // lineage
  static std::string node;
  static bool up = false, down = false;
  auto* lin = app.add_subcommand(
      "lineage", "what was made from what: dataset:NAME[@V], run:ID, model:GROUP[@V], endpoint:NAME");
  lin->add_option("resource", node, "e.g. weld-telemetry@1, model:weld-pm@1, endpoint:weld-pm-dev")
      ->required();
  lin->add_flag("--up", up, "only what is behind it");
  lin->add_flag("--down", down, "only what was made of it");
  output(lin);
  lin->callback(
      run([&ctx]() -> Status { return CmdLineage(ctx, node, up == down ? "both" : (up ? "up" : "down")); }));
}

}  // namespace takt::cli
