// File: cli/event_commands.h
//
// The event outbox, its rules and deliveries:
//   takt event list [--type T] [--subject S] [--limit N]
//   takt event show ID                       the envelope and its deliveries
//   takt event rule list
//   takt event rule put NAME --pattern FILE|JSON --target KIND [--config FILE|JSON]
//                            [--description D] [--disabled]
//   takt event rule delete NAME
//   takt event rule test --pattern FILE|JSON --event FILE|JSON|ID
//   takt event deliveries [--status dead|failed|pending|delivered] [--rule R] [--event ID]
//   takt event replay ID [--rule R]
// Adds the "event" subcommand to the app.
#pragma once

#include <functional>

#include "cli/data_commands.h"

namespace takt::cli {

void AddEventCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                      const std::function<void(CLI::App*)>& output);

}  // namespace takt::cli
