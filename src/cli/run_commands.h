// File: cli/run_commands.h
//
// Pipelines and experiments: `takt pipeline run FILE [--param k=v] [--no-cache]`
// (sends the code files command steps name and the git commit of the
// pipeline's folder), and `takt run cancel|rerun|compare|search|plot`.
// Expects "pipeline" and "run" subcommands to exist already.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "cli/data_commands.h"
#include "core/json.h"

namespace takt::cli {

void AddRunCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                    const std::function<void(CLI::App*)>& output);

// Shared with cli/pipeline_commands.cc.
// The files command steps name in `code:`, relative to the pipeline's
// folder, as {"path": "<base64>"}.
Result<Json> CodeFiles(const std::string& pipeline_file, const std::string& yaml);
// The commit of the git work tree holding `dir`, if any ("" otherwise).
std::string GitCommit(const std::filesystem::path& dir);
// NAME=VALUE pairs as a JSON object of strings (the server converts them).
Result<Json> ParseParams(const std::vector<std::string>& params);
// Follows a run to its end (log lines and step states on stderr unless quiet).
Result<Json> Follow(Context& ctx, const std::string& id, bool quiet);
// A run's header, parameters and steps (status, metrics, cache hits, attempts, errors) as a table.
void PrintRunSteps(const Json& run);
// Prints a finished run; FailedPrecondition unless it succeeded.
Status Settle(Context& ctx, const Json& done);

}  // namespace takt::cli
