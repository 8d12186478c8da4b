// File: core/config.h
//
// takt's configuration. Every setting comes, in order of precedence, from a
// command-line flag, a TAKT_* environment variable, the config file, or the
// built-in default. A setting is known by one name in all three places:
// flag `--data-dir`, variable `TAKT_DATA_DIR`, file key `data-dir`.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/result.h"

namespace takt {

struct Config {
  std::string data_dir = "./takt-data";
  std::string master_key_file;  // empty: <data_dir>/master.key
  std::string landing_dir;      // empty: <data_dir>/landing; server-side ingest sources must lie under it
  std::string address = "127.0.0.1";
  int port = 8080;
  int http_threads = 4;  // the handler pool
  int http_loops = 0;    // event loops for connections; 0 = one per core
  int workers = 2;       // concurrent pipeline runs
  int step_slots =
      0;  // local executor: steps running at once across runs (0 = the number of cores, at least 2)
  std::string slurm_conf;       // a Slurm cluster's slurm.conf: enables `executor: slurm` ("" = none)
  std::string slurm_partition;  // "" = the cluster's default partition

  int event_max_attempts = 8;        // tries of an event delivery before it is dead
  int event_base_backoff_ms = 1000;  // first retry after this, doubling up to 5 min
  std::string log_format = "text";
  std::string log_level = "info";
  std::string url = "http://127.0.0.1:8080";  // where the CLI finds the server
  std::string token;                          // the CLI's credential
  std::string credentials_file;               // empty: $HOME/.config/takt/credentials

  std::string MasterKeyPath() const;
  std::string LandingPath() const;
  std::string CredentialsPath() const;
};

// The names every source accepts ("data-dir", "port", ...).
const std::vector<std::string>& ConfigKeys();

// Merges the sources. `flags` holds only the flags given on the command line,
// by key. `config_file` empty: $TAKT_CONFIG, else none. Unknown keys in the
// file, or values of the wrong type anywhere, are InvalidArgument naming the
// source and key ("TAKT_PORT: 'abc' is not a number").
Result<Config> LoadConfig(const std::map<std::string, std::string>& flags, std::string config_file = "");

}  // namespace takt
