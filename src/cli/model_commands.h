// File: cli/model_commands.h
//
// The model registry's commands; VERSION is a number or an alias (champion):
//   takt model list [--project P] [--tag k=v]          groups
//   takt model create GROUP --project P [--description D] [--tag k=v]
//   takt model show GROUP [VERSION]                    a group's versions, or one version in full
//   takt model search [--project P] [--status S] [--tag k=v] [--alias A] [--metric 'auc>=0.9'] [--sort auc]
//   takt model register --file model.json --group G [--framework xgboost] [--project P]
//                       [--schema schema.json | --features a,b,c] [--metrics m.json] [--params p.json]
//                       [--card card.json] [--sample sample.csv] [--description D]
//   takt model approve|reject GROUP VERSION [--comment C]
//   takt model history GROUP [VERSION]
//   takt model alias set GROUP ALIAS VERSION | alias rm GROUP ALIAS
//   takt model update GROUP [--description D] [--tag k=v] [--remove-tag k]
//   takt model card GROUP VERSION [--file card.json | --remove]
//   takt model download GROUP VERSION [-o FILE]
// Added to the app by Main.
#pragma once

#include <functional>

#include "cli/data_commands.h"

namespace takt::cli {

void AddModelCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                      const std::function<void(CLI::App*)>& output);

}  // namespace takt::cli
