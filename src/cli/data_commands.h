// File: cli/data_commands.h
//
// The data hub's commands (dataset ingest/show/head/export/stats/diff/tag/
// update/access/schedule, grant, group, project, lineage), added to the app
// by Main.
#pragma once

#include <functional>

#include "core/result.h"

namespace CLI {
class App;
}  // namespace CLI

namespace takt::cli {

struct Context;

// Wraps a command body: loads the configuration, runs it, keeps its Status.
using CommandRunner = std::function<std::function<void()>(std::function<Status()>)>;

// Expects a "dataset" subcommand to exist already.
void AddDataCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                     const std::function<void(CLI::App*)>& output);

}  // namespace takt::cli
