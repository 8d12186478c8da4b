#include "cli/access_key_commands.h"

#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/context.h"
#include "cli/output.h"

namespace takt::cli {
namespace {

// Options of the access-key commands; they outlive parsing (CLI11 binds to them).
struct AccessKeyOptions {
  std::string id;
  std::string principal;
  std::string description;
};

Status CmdCreate(Context& ctx, const AccessKeyOptions& o) {
  Json body = Json::object();
  if (!o.principal.empty()) body["principal"] = o.principal;
  if (!o.description.empty()) body["description"] = o.description;
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("POST", "/api/v1/access-keys", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  const Json& key = r["access_key"];
  std::cout << "Created access key for " << Str(key, "principal") << "\n"
            << "  access key id      " << Str(key, "id") << "\n"
            << "  secret access key  " << Str(r, "secret_access_key") << "\n"
            << "(the secret is shown only this once)\n\n"
            << "For boto3 and the AWS CLI:\n"
            << "  export AWS_ACCESS_KEY_ID=" << Str(key, "id") << "\n"
            << "  export AWS_SECRET_ACCESS_KEY=<the secret above>\n"
            << "  boto3.client(\"sagemaker-runtime\", endpoint_url=\"" << ctx.config.url
            << "\", region_name=\"us-east-1\")\n";
  return Ok();
}

Status CmdList(Context& ctx, const AccessKeyOptions& o) {
  std::string target = "/api/v1/access-keys";
  if (!o.principal.empty()) target += "?principal=" + Enc(o.principal);
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& k : r) {
    std::string used = Str(k, "last_used_at");
    rows.push_back({Str(k, "id"), Str(k, "principal"), Str(k, "status"), ShortTime(Str(k, "created_at")),
                    used.empty() ? "never" : ShortTime(used), Str(k, "description")});
  }
  PrintTable({"ID", "PRINCIPAL", "STATUS", "CREATED", "LAST USED", "DESCRIPTION"}, rows);
  return Ok();
}

Status CmdSetStatus(Context& ctx, const AccessKeyOptions& o, const std::string& verb) {
  TAKT_ASSIGN_OR_RETURN(
      Json r, ctx.Call("POST", "/api/v1/access-keys/" + Enc(o.id) + "/" + verb, "{}", "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::cout << "Access key " << o.id << " is " << Str(r, "status") << "\n";
  return Ok();
}

Status CmdDelete(Context& ctx, const AccessKeyOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("DELETE", "/api/v1/access-keys/" + Enc(o.id)));
  if (ctx.json()) return PrintJson(r), Ok();
  std::cout << "Deleted access key " << o.id << " (requests signed with it are refused from now on)\n";
  return Ok();
}

}  // namespace

void AddAccessKeyCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                          const std::function<void(CLI::App*)>& output) {
  static AccessKeyOptions o;  // bound by CLI11 for the life of the process

  auto* key = app.add_subcommand("access-key", "access key pairs for AWS SDKs (SigV4) on /endpoints/...")
                  ->require_subcommand(1)
                  ->fallthrough();

  auto* create = key->add_subcommand("create", "create an access key and print its secret once");
  create->add_option("--principal", o.principal, "whose key (default: you; others' keys need an admin)");
  create->add_option("--description", o.description, "what the key is for, e.g. the plant system using it");
  output(create);
  create->callback(run([&] { return CmdCreate(ctx, o); }));

  auto* list =
      key->add_subcommand("list", "access keys (never their secrets): yours, or everyone's for an admin");
  list->add_option("--principal", o.principal, "only this principal's keys");
  output(list);
  list->callback(run([&] { return CmdList(ctx, o); }));

  auto* deactivate = key->add_subcommand("deactivate", "refuse requests signed with a key, keeping it");
  deactivate->add_option("id", o.id, "access key id (TKIA...)")->required();
  output(deactivate);
  deactivate->callback(run([&] { return CmdSetStatus(ctx, o, "deactivate"); }));

  auto* activate = key->add_subcommand("activate", "accept a deactivated key again");
  activate->add_option("id", o.id, "access key id (TKIA...)")->required();
  output(activate);
  activate->callback(run([&] { return CmdSetStatus(ctx, o, "activate"); }));

  auto* del = key->add_subcommand("delete", "delete an access key");
  del->add_option("id", o.id, "access key id (TKIA...)")->required();
  output(del);
  del->callback(run([&] { return CmdDelete(ctx, o); }));
}

}  // namespace takt::cli
