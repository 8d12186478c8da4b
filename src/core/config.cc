#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <functional>

namespace takt {
namespace {

struct Setting {
  std::string key;
  std::function<Status(Config&, const std::string&, const std::string& source)> set;
};

Status SetInt(int& out, const std::string& value, const std::string& source, int lo, int hi) {
  int v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || p != value.data() + value.size()) {
    return InvalidArgument(source + ": '" + value + "' is not a number");
  }
  if (v < lo || v > hi) {
    return InvalidArgument(source + ": " + value + " is out of range [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "]");
  }
  out = v;
  return Ok();
}

Status SetOneOf(std::string& out, const std::string& value, const std::string& source,
                std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) {
      out = value;
      return Ok();
    }
    if (!list.empty()) list += ", ";
    list += a;
  }
  return InvalidArgument(source + ": '" + value + "' is not one of " + list);
}

const std::vector<Setting>& Settings() {
  static const auto* settings = new std::vector<Setting>{
      {"data-dir",
       [](Config& c, const std::string& v, const std::string&) {
         c.data_dir = v;
         return Ok();
       }},
      {"master-key-file",
       [](Config& c, const std::string& v, const std::string&) {
         c.master_key_file = v;
         return Ok();
       }},
      {"landing-dir",
       [](Config& c, const std::string& v, const std::string&) {
         c.landing_dir = v;
         return Ok();
       }},
      {"address",
       [](Config& c, const std::string& v, const std::string&) {
         c.address = v;
         return Ok();
       }},
      {"port",
       [](Config& c, const std::string& v, const std::string& s) { return SetInt(c.port, v, s, 0, 65535); }},
      {"http-threads", [](Config& c, const std::string& v,
                          const std::string& s) { return SetInt(c.http_threads, v, s, 1, 256); }},
      {"http-loops", [](Config& c, const std::string& v,
                        const std::string& s) { return SetInt(c.http_loops, v, s, 0, 64); }},
      {"workers",
       [](Config& c, const std::string& v, const std::string& s) { return SetInt(c.workers, v, s, 1, 256); }},
      {"step-slots", [](Config& c, const std::string& v,
                        const std::string& s) { return SetInt(c.step_slots, v, s, 0, 1024); }},
      {"slurm-conf",
       [](Config& c, const std::string& v, const std::string&) {
         c.slurm_conf = v;
         return Ok();
       }},
      {"slurm-partition",
       [](Config& c, const std::string& v, const std::string&) {
         c.slurm_partition = v;
         return Ok();
       }},
      {"event-max-attempts", [](Config& c, const std::string& v,
                                const std::string& s) { return SetInt(c.event_max_attempts, v, s, 1, 100); }},
      {"event-base-backoff-ms",
       [](Config& c, const std::string& v, const std::string& s) {
         return SetInt(c.event_base_backoff_ms, v, s, 0, 3'600'000);
       }},
      {"log-format",
       [](Config& c, const std::string& v, const std::string& s) {
         return SetOneOf(c.log_format, v, s, {"text", "json"});
       }},
      {"log-level",
       [](Config& c, const std::string& v, const std::string& s) {
         return SetOneOf(c.log_level, v, s, {"debug", "info", "warn", "error"});
       }},
      {"url",
       [](Config& c, const std::string& v, const std::string&) {
         c.url = v;
         return Ok();
       }},
      {"token",
       [](Config& c, const std::string& v, const std::string&) {
         c.token = v;
         return Ok();
       }},
      {"credentials-file",
       [](Config& c, const std::string& v, const std::string&) {
         c.credentials_file = v;
         return Ok();
       }},
  };
  return *settings;
}

std::string EnvName(const std::string& key) {
  std::string env = "TAKT_";
  for (char ch : key)
    env += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return env;
}

}  // namespace

std::string Config::MasterKeyPath() const {
  if (!master_key_file.empty()) return master_key_file;
  return (std::filesystem::path(data_dir) / "master.key").string();
}

std::string Config::LandingPath() const {
  if (!landing_dir.empty()) return landing_dir;
  return (std::filesystem::path(data_dir) / "landing").string();
}

std::string Config::CredentialsPath() const {
  if (!credentials_file.empty()) return credentials_file;
  const char* home = std::getenv("HOME");
  return (std::filesystem::path(home ? home : ".") / ".config" / "takt" / "credentials").string();
}

const std::vector<std::string>& ConfigKeys() {
  static const auto* keys = [] {
    auto* k = new std::vector<std::string>();
    for (const auto& s : Settings()) k->push_back(s.key);
    return k;
  }();
  return *keys;
}

Result<Config> LoadConfig(const std::map<std::string, std::string>& flags, std::string config_file) {
  Config config;
  if (config_file.empty()) {
    if (const char* e = std::getenv("TAKT_CONFIG")) config_file = e;
  }
  // 1. The file.
  if (!config_file.empty()) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(config_file);
    } catch (const YAML::BadFile&) {
      return NotFound("config file " + config_file + " cannot be read");
    } catch (const YAML::Exception& e) {
      return InvalidArgument("config file " + config_file + ": line " + std::to_string(e.mark.line + 1) +
                             ": " + e.msg);
    }
    if (root && !root.IsNull()) {
      if (!root.IsMap())
        return InvalidArgument("config file " + config_file + ": expected a mapping of settings");
      for (const auto& kv : root) {
        std::string key = kv.first.as<std::string>("");
        const Setting* found = nullptr;
        for (const auto& s : Settings())
          if (s.key == key) found = &s;
        std::string source =
            "config file " + config_file + ": line " + std::to_string(kv.first.Mark().line + 1) + ": " + key;
        if (!found)
          return InvalidArgument(source + " is not a setting (known: data-dir, port, address, ...)");
        if (!kv.second.IsScalar()) return InvalidArgument(source + ": expected a single value");
        TAKT_RETURN_IF_ERROR(found->set(config, kv.second.Scalar(), source));
      }
    }
  }
  // 2. The environment, 3. the flags.
  for (const auto& s : Settings()) {
    std::string env = EnvName(s.key);
    if (const char* v = std::getenv(env.c_str())) TAKT_RETURN_IF_ERROR(s.set(config, v, env));
  }
  for (const auto& [key, value] : flags) {
    const Setting* found = nullptr;
    for (const auto& s : Settings())
      if (s.key == key) found = &s;
    if (!found) return InvalidArgument("--" + key + " is not a setting");
    TAKT_RETURN_IF_ERROR(found->set(config, value, "--" + key));
  }
  return config;
}

}  // namespace takt
