// File: cli/context.h
//
// What every CLI command shares: the merged configuration, the client that
// talks to the server, and small rendering helpers. Included only by the
// cli's .cc files (it pulls in nlohmann::json).
#pragma once

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include "cli/output.h"
#include "core/config.h"
#include "core/json.h"
#include "http/client.h"
#include "http/url.h"

namespace takt::cli {

// Everything a command needs: the merged configuration and how to print.
struct Context {
  std::map<std::string, std::string> flags;  // settings given as flags
  std::string config_file;
  std::string output = "table";
  Config config;
  std::optional<http::Client> client;

  Status Load() {
    TAKT_ASSIGN_OR_RETURN(config, LoadConfig(flags, config_file));
    // The credentials file fills in what neither flags nor environment gave.
    std::ifstream in(config.CredentialsPath());
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      auto j = ParseJson(ss.str(), "credentials file " + config.CredentialsPath());
      if (j && j->is_object()) {
        if (config.token.empty()) config.token = j->value("token", "");
        if (!flags.contains("url") && !std::getenv("TAKT_URL")) config.url = j->value("url", config.url);
      }
    }
    return Ok();
  }

  bool json() const { return output == "json"; }

  Result<http::Client*> Client() {
    if (!client) {
      TAKT_ASSIGN_OR_RETURN(http::Client c, http::Client::Create(config.url));
      if (!config.token.empty()) c.SetHeader("Authorization", "Bearer " + config.token);
      c.SetTimeout(std::chrono::seconds(600));
      client.emplace(std::move(c));
    }
    return &*client;
  }

  // Sends a request; a non-2xx reply becomes the Error the server described.
  Result<Json> Call(std::string_view method, const std::string& target, std::string_view body = {},
                    std::string_view content_type = {},
                    const std::function<void(size_t, size_t)>& progress = {}) {
    TAKT_ASSIGN_OR_RETURN(http::Client * c, Client());
    TAKT_ASSIGN_OR_RETURN(http::ClientResponse r, c->Send(method, target, body, content_type, progress));
    if (r.status >= 200 && r.status < 300) {
      if (r.content_type.find("json") == std::string::npos) return Json(r.body);
      return ParseJson(r.body, "server reply");
    }
    return std::unexpected(ResponseError(r));
  }

  // The Error a non-2xx reply describes.
  static Error ResponseError(const http::ClientResponse& r) {
    auto j = Json::parse(r.body, nullptr, false);
    std::string code = "INTERNAL", message = "HTTP " + std::to_string(r.status);
    if (j.is_object() && j.contains("error") && j["error"].is_object()) {
      code = j["error"].value("code", code);
      message = j["error"].value("message", message);
    }
    Code c2 = Code::kInternal;
    for (Code k : {Code::kInvalidArgument, Code::kUnauthenticated, Code::kPermissionDenied, Code::kNotFound,
                   Code::kAlreadyExists, Code::kConflict, Code::kFailedPrecondition, Code::kPayloadTooLarge,
                   Code::kUnsupportedMedia, Code::kResourceExhausted, Code::kUnavailable}) {
      if (CodeName(k) == code) c2 = k;
    }
    if (c2 == Code::kUnauthenticated)
      message += " (log in with `takt login --with-token <token>` or set TAKT_TOKEN)";
    return Error(c2, message);
  }
};

inline std::string Enc(std::string_view s) { return http::PercentEncode(s); }

inline std::string Str(const Json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  if (j[key].is_string()) return j[key].get<std::string>();
  return j[key].dump();
}

inline std::string Num(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

inline std::string ShortTime(const std::string& iso) {
  return iso.size() >= 19 ? iso.substr(0, 19) + "Z" : iso;
}

inline Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void PrintJson(const Json& j) { std::cout << j.dump(2) << "\n"; }

inline void PrintRows(const Json& t) {
  std::vector<std::string> header;
  for (const auto& c : t["columns"]) header.push_back(Str(c, "name"));
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : t["rows"]) {
    std::vector<std::string> row;
    for (const auto& v : r) {
      if (v.is_null())
        row.push_back("");
      else if (v.is_string())
        row.push_back(v.get<std::string>());
      else if (v.is_number_float())
        row.push_back(Num(v.get<double>(), 3));
      else
        row.push_back(v.dump());
    }
    rows.push_back(std::move(row));
  }
  PrintTable(header, rows);
}

}  // namespace takt::cli
