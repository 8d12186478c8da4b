#include "e2e/serving_fixture.h"

#include <filesystem>

#include "core/json.h"
#include "registry/testing_xgboost.h"

namespace takt::testkit {

Json ParseBody(const std::string& body) {
  auto j = Json::parse(body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << body;
  return j;
}

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

void WeldPmServingTest::StartServerWithProject() {
  std::string error;
  ASSERT_TRUE(server_.Start(&error)) << error;
  sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
  eve_ = server_.CreatePrincipal("eve", {"ml-engineer"});
  ada_ = server_.CreatePrincipal("ada", {"approver"});
  ASSERT_FALSE(sam_.empty() || eve_.empty() || ada_.empty());
  ASSERT_EQ(
      server_
          .Cli(server_.admin_token(), {"project", "create", "weld-pm", "--member", "sam", "--member", "eve"})
          .exit_code,
      0);
}

void WeldPmServingTest::ReleaseVersion1(const std::string& release_yaml) {
  dir_ = server_.dir() + "/notebook";
  std::filesystem::create_directories(dir_);
  ASSERT_EQ(registry::testing::TrainNotebookModels(dir_), "");
  WriteFile(dir_ + "/release.yaml", release_yaml);
  CliResult config = server_.Cli(eve_, {"release", "config", "put", dir_ + "/release.yaml"});
  ASSERT_EQ(config.exit_code, 0) << config.out << config.err;
  CliResult reg = server_.Cli(sam_, {"model", "register", "--file", dir_ + "/weld.ubj", "--framework",
                                     "xgboost", "--group", "weld-pm", "--project", "weld-pm", "-o", "json"});
  ASSERT_EQ(reg.exit_code, 0) << reg.out << reg.err;
  ASSERT_EQ(server_.Cli(ada_, {"model", "approve", "weld-pm", "1"}).exit_code, 0);
  CliResult wait =
      server_.Cli(eve_, {"release", "wait", "weld-pm", "--version", "1", "--timeout", "120", "-o", "json"});
  ASSERT_EQ(wait.exit_code, 0) << wait.out << wait.err;
  // `release wait` exits 0 when the release has ended, also when it failed.
  ASSERT_EQ(ParseOut(wait)["status"], "Succeeded") << wait.out;
}

http::Client WeldPmServingTest::ClientAs(const std::string& token) {
  auto c = http::Client::Create(server_.url());
  EXPECT_TRUE(c.has_value());
  if (!token.empty()) c->SetHeader("Authorization", "Bearer " + token);
  return std::move(*c);
}

}  // namespace takt::testkit
