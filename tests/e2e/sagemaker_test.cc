// The SageMaker runtime API with AWS Signature V4, through the real binary and
// the real boto3 (Debian's python3-boto3): a plant system's service identity
// gets an access key from takt, and boto3's unchanged `sagemaker-runtime`
// client, pointed at takt with endpoint_url, invokes a dev endpoint with CSV
// and JSON, a target variant, custom attributes and an inference id; the
// predictions equal those of the bearer-token route. A wrong secret, an
// unknown key, a deleted key, a body other than the signed one and an
// unsigned payload are refused with the error codes botocore knows.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/json.h"
#include "e2e/serving_fixture.h"
#include "http/client.h"

namespace takt::testkit {
namespace {

bool HasBoto3() { return std::system("/usr/bin/python3 -c 'import boto3, botocore' >/dev/null 2>&1") == 0; }

// Runs a Python script; its stdout must be one JSON object.
Json RunPython(const std::string& script, const std::map<std::string, std::string>& args) {
  std::string cmd = "/usr/bin/python3 " + script;
  for (const auto& [k, v] : args) cmd += " '" + k + "=" + v + "'";
  cmd += " 2>&1";
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    ::pclose(f);
  }
  auto j = Json::parse(out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << "the script printed: " << out;
  return j.is_object() ? j : Json::object();
}

// The client side, as a user writes it: boto3 unchanged, and for the cases
// boto3 cannot produce, botocore's own signer over a hand-made request.
constexpr const char* kClientScript = R"PY(import json, sys, urllib.request, urllib.error
import boto3, botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.config import Config

a = dict(x.split("=", 1) for x in sys.argv[1:])
out = {}

def client(key, secret):
    return boto3.client("sagemaker-runtime", endpoint_url=a["url"], region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))

def invoke(c, **kw):
    try:
        r = c.invoke_endpoint(EndpointName=a["endpoint"], **kw)
        return {"ok": True, "body": r["Body"].read().decode(), "content_type": r["ContentType"],
                "variant": r.get("InvokedProductionVariant", "")}
    except botocore.exceptions.ClientError as e:
        return {"ok": False, "code": e.response["Error"]["Code"], "message": e.response["Error"]["Message"],
                "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}

def raw(method, path, body, sign_body=None, headers=None):
    # Signs `sign_body` (default: body) with botocore's SigV4Auth, sends `body`.
    url = a["url"] + path
    req = AWSRequest(method=method, url=url, data=body if sign_body is None else sign_body,
                     headers=dict(headers or {}))
    SigV4Auth(Credentials(a["key"], a["secret"]), "sagemaker", "us-east-1").add_auth(req)
    h = dict(req.headers.items())
    r = urllib.request.Request(url, data=body if method != "GET" else None, method=method, headers=h)
    try:
        with urllib.request.urlopen(r) as resp:
            return {"status": resp.status, "type": resp.headers.get("x-amzn-ErrorType", ""), "body": resp.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "type": e.headers.get("x-amzn-ErrorType", ""), "body": e.read().decode()}

good = client(a["key"], a["secret"])
if a["mode"] == "full":
    out["csv"] = invoke(good, ContentType="text/csv", Body=a["csv"].replace("|", "\n").encode())
    out["json"] = invoke(good, ContentType="application/json", Accept="application/json", Body=a["json"].encode())
    out["variant"] = invoke(good, ContentType="text/csv", Body=a["csv"].replace("|", "\n").encode(),
                            TargetVariant=a["variant"], CustomAttributes="trace=e2e-42", InferenceId="inf-0001")
    out["wrong_secret"] = invoke(client(a["key"], "x" * 40), ContentType="text/csv", Body=b"1,2,3\n")
    out["unknown_key"] = invoke(client("TKIAAAAAAAAAAAAAAAAA", a["secret"]), ContentType="text/csv", Body=b"1,2,3\n")
    path = "/endpoints/" + a["endpoint"] + "/invocations"
    ct = {"Content-Type": "text/csv"}
    out["raw_ok"] = raw("POST", path, b"0.1,0.2,0.3\n", headers=ct)
    out["tampered"] = raw("POST", path, b"0.9,0.9,0.9\n", sign_body=b"0.1,0.2,0.3\n", headers=ct)
    out["unsigned"] = raw("POST", path, b"0.1,0.2,0.3\n", headers={"Content-Type": "text/csv",
                                                                  "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    out["other_route"] = raw("GET", "/api/v1/whoami", b"")
else:
    out["csv"] = invoke(good, ContentType="text/csv", Body=a["csv"].replace("|", "\n").encode())
print(json.dumps(out))
)PY";

class SageMakerTest : public WeldPmServingTest {
 protected:
  void SetUp() override {
    if (!HasBoto3()) GTEST_SKIP() << "/usr/bin/python3 has no boto3 (apt-get install python3-boto3)";
    ASSERT_NO_FATAL_FAILURE(StartServerWithProject());
    CliResult mes = server_.Cli(server_.admin_token(), {"principal", "create", "plant-mes", "--service",
                                                        "--persona", "service", "-o", "json"});
    ASSERT_EQ(mes.exit_code, 0) << mes.err;
    mes_ = ParseOut(mes).value("token", "");
    // dev endpoints admit the project's members (and admins).
    ASSERT_EQ(server_.Cli(server_.admin_token(), {"project", "add-member", "weld-pm", "plant-mes"}).exit_code,
              0);
    ASSERT_NO_FATAL_FAILURE(ReleaseVersion1("model_group: weld-pm\nstages:\n  - name: dev\n"));
    script_ = server_.dir() + "/client.py";
    WriteFile(script_, kClientScript);
  }

  // The bearer-token route's reply to the same rows.
  std::string BearerInvoke(const std::string& body, const std::string& content_type) {
    auto c = http::Client::Create(server_.url());
    EXPECT_TRUE(c.has_value());
    c->SetHeader("Authorization", "Bearer " + mes_);
    c->SetHeader("Accept", content_type);
    auto r = c->Send("POST", "/endpoints/weld-pm-dev/invocations", body, content_type);
    if (!r) {
      ADD_FAILURE() << r.error().ToString();
      return "";
    }
    EXPECT_EQ(r->status, 200) << r->body;
    return r->body;
  }

  std::string mes_, script_;
};

TEST_F(SageMakerTest, Boto3InvokesWithATaktAccessKeyAndForgeriesAreRefused) {
  // Only the principal itself or an admin issues its keys.
  CliResult not_own = server_.Cli(sam_, {"access-key", "create", "--principal", "plant-mes"});
  EXPECT_EQ(not_own.exit_code, 3) << not_own.err;
  EXPECT_NE(not_own.err.find("only the principal itself or an admin"), std::string::npos) << not_own.err;
  CliResult own = server_.Cli(sam_, {"access-key", "create", "--description", "notebook"});
  ASSERT_EQ(own.exit_code, 0) << own.err;
  EXPECT_NE(own.out.find("AWS_SECRET_ACCESS_KEY"), std::string::npos) << own.out;

  CliResult created = server_.Cli(server_.admin_token(), {"access-key", "create", "--principal", "plant-mes",
                                                          "--description", "line 4 MES", "-o", "json"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  Json key = ParseOut(created);
  const std::string id = key["access_key"]["id"].get<std::string>();
  const std::string secret = key["secret_access_key"].get<std::string>();
  ASSERT_EQ(id.size(), 20u);
  ASSERT_EQ(secret.size(), 40u);

  // Lists never carry a secret; a principal sees its own keys only.
  CliResult all = server_.Cli(server_.admin_token(), {"access-key", "list", "-o", "json"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_EQ(ParseOut(all).size(), 2u);
  EXPECT_EQ(all.out.find(secret), std::string::npos);
  Json sams = ParseOut(server_.Cli(sam_, {"access-key", "list", "-o", "json"}));
  ASSERT_EQ(sams.size(), 1u);
  EXPECT_EQ(sams[0]["principal"], "sam");
  EXPECT_NE(server_.Cli(sam_, {"access-key", "delete", id}).exit_code, 0) << "not sam's key";

  const std::string csv = "0.7,12.0,0.2\n0.1,9.5,0.9\n";
  const std::string json = R"({"instances": [[0.7, 12.0, 0.2], [0.1, 9.5, 0.9]]})";
  const std::string bearer_csv = BearerInvoke(csv, "text/csv");
  const std::string bearer_json = BearerInvoke(json, "application/json");
  Json ep = ParseOut(server_.Cli(server_.admin_token(), {"endpoint", "show", "weld-pm-dev", "-o", "json"}));
  const std::string variant = ep["variants"][0]["name"].get<std::string>();

  std::string csv_arg = csv;
  for (char& c : csv_arg) c = c == '\n' ? '|' : c;
  Json r = RunPython(script_, {{"mode", "full"},
                               {"url", server_.url()},
                               {"key", id},
                               {"secret", secret},
                               {"endpoint", "weld-pm-dev"},
                               {"variant", variant},
                               {"csv", csv_arg},
                               {"json", json}});
  ASSERT_TRUE(r.contains("csv")) << r.dump();
  EXPECT_TRUE(r["csv"]["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["csv"].value("body", ""), bearer_csv);
  EXPECT_EQ(r["csv"].value("content_type", ""), "text/csv");
  EXPECT_TRUE(r["json"]["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(Json::parse(r["json"].value("body", "null"), nullptr, false), Json::parse(bearer_json));
  EXPECT_TRUE(r["variant"]["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["variant"].value("body", ""), bearer_csv);
  EXPECT_EQ(r["variant"].value("variant", ""), variant);

  EXPECT_EQ(r["wrong_secret"]["code"], "InvalidSignatureException") << r.dump();
  EXPECT_EQ(r["wrong_secret"]["status"], 403);
  EXPECT_EQ(r["unknown_key"]["code"], "UnrecognizedClientException") << r.dump();
  EXPECT_EQ(r["unknown_key"]["status"], 403);
  EXPECT_EQ(r["raw_ok"]["status"], 200) << r.dump();
  EXPECT_EQ(r["tampered"]["status"], 403) << r.dump();
  EXPECT_EQ(r["tampered"]["type"], "InvalidSignatureException");
  Json tampered_body = Json::parse(r["tampered"].value("body", ""), nullptr, false);
  EXPECT_NE(tampered_body.value("message", "").find("signature"), std::string::npos) << tampered_body.dump();
  EXPECT_EQ(r["unsigned"]["status"], 403) << r.dump();
  EXPECT_NE(r["unsigned"].value("body", "").find("payload must be signed"), std::string::npos) << r.dump();
  EXPECT_EQ(r["other_route"]["status"], 401) << r.dump();
  EXPECT_NE(r["other_route"].value("body", "").find("accepted on /endpoints/... only"), std::string::npos)
      << r.dump();

  // The key's use is recorded; refusals are audited; the secret is in no audit record.
  Json listed = ParseOut(
      server_.Cli(server_.admin_token(), {"access-key", "list", "--principal", "plant-mes", "-o", "json"}));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0]["last_used_at"].is_null()) << listed.dump();
  CliResult audit = server_.Cli(server_.admin_token(), {"audit", "list", "--limit", "500", "-o", "json"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_EQ(audit.out.find(secret), std::string::npos);
  bool tamper_audited = false, create_audited = false;
  for (const auto& a : ParseOut(audit)) {
    if (a["principal"] == "plant-mes" && a["action"] == "endpoint:invoke" && a["status"] == 403 &&
        a["detail"].get<std::string>().find(id) != std::string::npos)
      tamper_audited = true;
    if (a["action"] == "access-key:create" && a["status"] == 201) create_audited = true;
  }
  EXPECT_TRUE(tamper_audited) << audit.out;
  EXPECT_TRUE(create_audited) << audit.out;

  // Deactivated, then deleted: refused as an unknown key.
  ASSERT_EQ(server_.Cli(server_.admin_token(), {"access-key", "deactivate", id}).exit_code, 0);
  std::map<std::string, std::string> args = {
      {"mode", "csv"},    {"url", server_.url()},      {"key", id},
      {"secret", secret}, {"endpoint", "weld-pm-dev"}, {"csv", csv_arg}};
  EXPECT_EQ(RunPython(script_, args)["csv"]["code"], "UnrecognizedClientException");
  ASSERT_EQ(server_.Cli(server_.admin_token(), {"access-key", "activate", id}).exit_code, 0);
  EXPECT_TRUE(RunPython(script_, args)["csv"]["ok"].get<bool>());
  CliResult deleted = server_.Cli(server_.admin_token(), {"access-key", "delete", id});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  Json after = RunPython(script_, args);
  EXPECT_EQ(after["csv"]["code"], "UnrecognizedClientException") << after.dump();
  EXPECT_EQ(after["csv"]["status"], 403);
}

}  // namespace
}  // namespace takt::testkit
