// File: cli/pipeline_commands.h
//
// Saved pipelines and their triggers:
//   takt pipeline save FILE                  keep a spec (and its code files) on the server
//   takt pipeline list | show NAME           with the schedule, next run and last status
//   takt pipeline start NAME [-p k=v] [--no-wait]
//   takt pipeline schedule NAME --cron "0 3 * * *" [-p k=v] [--disabled]
//   takt pipeline schedule NAME --off
// Added to the "pipeline" subcommand by AddRunCommands.
#pragma once

#include <functional>

#include "cli/data_commands.h"

namespace takt::cli {

void AddPipelineCommands(CLI::App& pipeline, Context& ctx, const CommandRunner& run,
                         const std::function<void(CLI::App*)>& output);

}  // namespace takt::cli
