// File: cli/run_commands.h
//
// Pipelines and experiments: `takt pipeline run FILE [--param k=v] [--no-cache]`
// (sends the code files command steps name and the git commit of the
// pipeline's folder), and `takt run cancel|rerun|compare|search|plot`.
// Expects "pipeline" and "run" subcommands to exist already.
#pragma once

#include <functional>

#include "cli/data_commands.h"

namespace takt::cli {

void AddRunCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                    const std::function<void(CLI::App*)>& output);

}  // namespace takt::cli
