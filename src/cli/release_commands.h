// File: cli/release_commands.h
//
// Release pipelines of a model group:
//   takt release status GROUP               stages, what serves each, the release going on
//   takt release config put FILE | show GROUP
//   takt release start GROUP VERSION        release an approved version again
//   takt release approve|reject GROUP --stage S [--comment C]
//   takt release rollback GROUP --stage S [--to V] [--comment C]
//   takt release history GROUP [--at T] [--stage S]   what served when, released and approved by whom
//   takt release list [GROUP] | show ID | wait GROUP [--version V] [--timeout 120]
#pragma once

#include <functional>

#include "cli/data_commands.h"

namespace takt::cli {

void AddReleaseCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                        const std::function<void(CLI::App*)>& output);

}  // namespace takt::cli
