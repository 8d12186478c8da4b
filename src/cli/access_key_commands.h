// File: cli/access_key_commands.h
//
// Access keys for AWS SDKs (boto3's sagemaker-runtime client and the like):
//   takt access-key create [--principal P] [--description D]   id and secret, once
//   takt access-key list [--principal P]
//   takt access-key deactivate ID | activate ID
//   takt access-key delete ID
// A principal manages its own keys; an admin anyone's (e.g. a service
// identity's). Adds the "access-key" subcommand to the app.
#pragma once

#include <functional>

#include "cli/data_commands.h"

namespace takt::cli {

void AddAccessKeyCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                          const std::function<void(CLI::App*)>& output);

}  // namespace takt::cli
