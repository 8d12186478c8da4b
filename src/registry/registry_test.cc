#include "registry/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/json.h"
#include "events/events.h"

namespace takt::registry {
namespace {

using ::testing::HasSubstr;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*store::OpenSqlite(":memory:"));
    bus_ = std::make_unique<events::EventBus>(db_.get());
    ASSERT_TRUE(bus_->Migrate());
    registry_ = std::make_unique<RegistryService>(db_.get());
    ASSERT_TRUE(registry_->Migrate());
  }
  Result<ModelVersion> TryRegister(ModelVersion v, const std::string& project = "weld-pm") {
    ModelVersion out;
    Status s = db_->Transaction([&](store::Database& tx) -> Status {
      TAKT_ASSIGN_OR_RETURN(out, registry_->Register(tx, v, project));
      return Ok();
    });
    if (!s) return std::unexpected(s.error());
    return out;
  }
  static ModelVersion Version(const std::string& author) {
    return {.group = "weld-pm",
            .blob_id = "abc",
            .feature_names = {"a", "b"},
            .metrics_json = R"({"auc": 0.91, "recall": 0.7})",
            .dataset = "weld-telemetry",
            .dataset_version = 1,
            .run_id = "run-1",
            .created_by = author};
  }
  ModelVersion RegisterOne(const std::string& author) {
    auto r = TryRegister(Version(author));
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r ? *r : ModelVersion{};
  }
  int CountEvents(const std::string& type) {
    int n = 0;
    auto events = bus_->List(100);
    for (const auto& e : *events) n += e.type == type;
    return n;
  }
  int CountVersions() { return static_cast<int>(db_->Query("SELECT * FROM model_versions")->size()); }
  std::vector<std::string> HistoryEvents(const std::string& group, int version) {
    std::vector<std::string> out;
    auto h = registry_->History(group, version);
    EXPECT_TRUE(h.has_value()) << h.error().ToString();
    if (h) {
      for (const auto& e : *h) out.push_back(e.event);
    }
    return out;
  }
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<RegistryService> registry_;
};

TEST_F(RegistryTest, VersionsAreNumberedAndStartPending) {
  EXPECT_EQ(RegisterOne("sam").version, 1);
  ModelVersion v2 = RegisterOne("sam");
  EXPECT_EQ(v2.version, 2);
  EXPECT_EQ(v2.status, kPending);
  auto got = registry_->GetVersion("weld-pm", 2);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(got->run_id, "run-1");
  EXPECT_EQ(CountEvents(events::kModelVersionRegistered), 2);
}

TEST_F(RegistryTest, SchemaDefaultsToFloatsAndRegisteredByAndSourceAreKept) {
  ModelVersion v = RegisterOne("sam");
  EXPECT_EQ(v.schema, (std::vector<Feature>{{"a", "float"}, {"b", "float"}}));
  auto got = registry_->GetVersion("weld-pm", 1);
  EXPECT_EQ(got->schema, v.schema);
  EXPECT_EQ(got->registered_by, "sam");
  EXPECT_EQ(got->source, kSourceRun);
  EXPECT_EQ(got->artifact_format, "json");
  EXPECT_FALSE(got->card.has_value());
  EXPECT_TRUE(got->sample_rows.empty());

  ModelVersion typed = Version("sam");
  typed.feature_names.clear();
  typed.schema = {{"force_kn", "float"}, {"cycles", "int"}, {"worn", "bool"}, {"line", "category"}};
  auto r = TryRegister(typed);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->feature_names, (std::vector<std::string>{"force_kn", "cycles", "worn", "line"}));
  EXPECT_EQ(registry_->GetVersion("weld-pm", 2)->schema, typed.schema);
}

TEST_F(RegistryTest, BadSchemasAreRefusedAndNothingIsStored) {
  struct Case {
    std::vector<Feature> schema;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{{"a", "float"}, {"a", "int"}}, "feature 'a' appears twice"},
           {{{"a", "float"}, {"", "int"}}, "feature 2 has an empty name"},
           {{{"a", "double"}}, "feature 'a' has type 'double'; use float, int, bool or category"},
       }) {
    ModelVersion v = Version("sam");
    v.feature_names.clear();
    v.schema = c.schema;
    auto r = TryRegister(v);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.error().message(), HasSubstr(c.message));
  }
  ModelVersion none = Version("sam");
  none.feature_names.clear();
  EXPECT_EQ(TryRegister(none).error().code(), Code::kInvalidArgument);
  ModelVersion disagree = Version("sam");
  disagree.schema = {{"a", "float"}, {"c", "float"}};
  EXPECT_THAT(TryRegister(disagree).error().message(), HasSubstr("disagree with the schema"));
  EXPECT_EQ(CountVersions(), 0);
  EXPECT_TRUE(registry_->ListGroups()->empty());  // the group is not created either
  EXPECT_EQ(CountEvents(events::kModelVersionRegistered), 0);
}

TEST_F(RegistryTest, SampleRowsKeepNaNAsMissingAndAreBounded) {
  ModelVersion v = Version("sam");
  v.sample_rows = {{1.5, std::nan("")}, {-2, 3}};
  auto r = TryRegister(v);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  auto got = registry_->GetVersion("weld-pm", 1);
  ASSERT_EQ(got->sample_rows.size(), 2u);
  EXPECT_EQ(got->sample_rows[0][0], 1.5);
  EXPECT_TRUE(std::isnan(got->sample_rows[0][1]));
  EXPECT_EQ(got->sample_rows[1], (std::vector<double>{-2, 3}));
  auto stored = db_->QueryOne("SELECT sample_json FROM model_versions", {}, "sample");
  EXPECT_EQ(stored->Text(0), "[[1.5,null],[-2.0,3.0]]");

  ModelVersion wide = Version("sam");
  wide.sample_rows = {{1, 2, 3}};
  EXPECT_THAT(TryRegister(wide).error().message(), HasSubstr("sample row 1 has 3 values; the schema has 2"));
  ModelVersion many = Version("sam");
  many.sample_rows.assign(21, {1, 2});
  EXPECT_THAT(TryRegister(many).error().message(), HasSubstr("sample has 21 rows; at most 20"));
  EXPECT_EQ(CountVersions(), 1);
}

TEST_F(RegistryTest, CardsAreObjectsOfStringsWithThreeRequiredFields) {
  auto card = ParseCard(R"({"intended_use": "rank robots for maintenance", "limitations": "plant P1 only",
                            "training_data": "weld-telemetry v1", "notes": "n"})");
  ASSERT_TRUE(card.has_value()) << card.error().ToString();
  EXPECT_EQ(card->limitations, "plant P1 only");
  EXPECT_EQ(ParseCard(CardJson(*card)).value(), *card);
  EXPECT_THAT(ParseCard(R"({"intended_use": "x", "limitations": "y"})").error().message(),
              HasSubstr("training_data is required"));
  EXPECT_THAT(ParseCard(R"({"intended_use": "x", "limitations": "y", "training_data": "z", "owner": "me"})")
                  .error()
                  .message(),
              HasSubstr("unknown field 'owner'"));
  EXPECT_THAT(ParseCard(R"({"intended_use": 3})").error().message(),
              HasSubstr("intended_use must be a string"));
  EXPECT_EQ(ParseCard("# markdown").error().code(), Code::kInvalidArgument);

  ModelVersion v = Version("sam");
  v.card = *card;
  ASSERT_TRUE(TryRegister(v).has_value());
  EXPECT_EQ(registry_->GetVersion("weld-pm", 1)->card, *card);
  ModelCard bad;
  bad.intended_use = "only this";
  auto refused = registry_->SetCard("weld-pm", 1, bad, "sam");
  EXPECT_EQ(refused.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->GetVersion("weld-pm", 1)->card, *card);
  auto removed = registry_->SetCard("weld-pm", 1, std::nullopt, "sam");
  ASSERT_TRUE(removed.has_value()) << removed.error().ToString();
  EXPECT_FALSE(removed->card.has_value());
  EXPECT_EQ(HistoryEvents("weld-pm", 1), (std::vector<std::string>{"registered", "metadata updated"}));
}

TEST_F(RegistryTest, AuthorMayNotApproveAndNothingChanges) {
  RegisterOne("sam");
  auto r = registry_->Approve("weld-pm", 1, "sam", "lgtm");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied);
  EXPECT_EQ(registry_->GetVersion("weld-pm", 1)->status, kPending);
  EXPECT_EQ(CountEvents(events::kModelVersionApproved), 0);
  EXPECT_EQ(HistoryEvents("weld-pm", 1), (std::vector<std::string>{"registered"}));
}

TEST_F(RegistryTest, ApprovalWritesTheEventInTheSameTransaction) {
  RegisterOne("sam");
  auto r = registry_->Approve("weld-pm", 1, "ada", "holdout AUC fine");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->status, kApproved);
  EXPECT_EQ(r->decided_by, "ada");
  EXPECT_EQ(CountEvents(events::kModelVersionApproved), 1);
  auto again = registry_->Approve("weld-pm", 1, "ada", "");
  EXPECT_EQ(again.error().code(), Code::kConflict);
  EXPECT_EQ(CountEvents(events::kModelVersionApproved), 1);
}

TEST_F(RegistryTest, UnknownGroupOrVersionIsNotFound) {
  RegisterOne("sam");
  auto r = registry_->Approve("weld-pm", 7, "ada", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_EQ(r.error().message(), "model group weld-pm has no version 7");
  EXPECT_EQ(registry_->Approve("paint-pm", 1, "ada", "").error().code(), Code::kNotFound);
  EXPECT_EQ(registry_->History("weld-pm", 7).error().code(), Code::kNotFound);
  EXPECT_EQ(registry_->History("paint-pm", 0).error().code(), Code::kNotFound);
}

TEST_F(RegistryTest, RejectThenApproveAgain) {
  RegisterOne("sam");
  ASSERT_TRUE(registry_->Reject("weld-pm", 1, "ada", "recall too low").has_value());
  EXPECT_EQ(registry_->GetVersion("weld-pm", 1)->status, kRejected);
  ASSERT_TRUE(registry_->Approve("weld-pm", 1, "ada", "re-checked").has_value());
  auto groups = registry_->ListGroups();
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ((*groups)[0].approved_versions, 1);
  auto h = registry_->History("weld-pm", 1);
  ASSERT_EQ(h->size(), 3u);
  EXPECT_EQ((*h)[1].event, "rejected");
  EXPECT_EQ((*h)[1].principal, "ada");
  EXPECT_EQ((*h)[1].comment, "recall too low");
  EXPECT_EQ((*h)[1].status, kRejected);
  EXPECT_EQ((*h)[2].event, "approved");
  EXPECT_FALSE((*h)[2].time.empty());
}

TEST_F(RegistryTest, GroupsCarryProjectDescriptionTagsAndCreator) {
  auto g =
      registry_->CreateGroup("weld-pm", "weld-pm", "failure in 24 h", {{"line", "A"}, {"team", "pm"}}, "sam");
  ASSERT_TRUE(g.has_value()) << g.error().ToString();
  EXPECT_EQ(g->project, "weld-pm");
  EXPECT_EQ(g->created_by, "sam");
  EXPECT_EQ(g->tags.at("line"), "A");
  EXPECT_EQ(registry_->CreateGroup("weld-pm", "weld-pm", "", {}, "sam").error().code(), Code::kAlreadyExists);
  EXPECT_EQ(registry_->CreateGroup("weld pm", "weld-pm", "", {}, "sam").error().code(),
            Code::kInvalidArgument);
  EXPECT_THAT(registry_->CreateGroup("paint-pm", "paint", "", {{"bad key", "x"}}, "sam").error().message(),
              HasSubstr("tag key 'bad key' is invalid"));
  EXPECT_EQ(registry_->CreateGroup("paint-pm", "", "", {}, "sam").error().code(), Code::kInvalidArgument);

  auto u = registry_->UpdateGroup(
      "weld-pm", {.description = "failure within 24 h", .set_tags = {{"line", "B"}}, .remove_tags = {"team"}},
      "ada");
  ASSERT_TRUE(u.has_value()) << u.error().ToString();
  EXPECT_EQ(u->description, "failure within 24 h");
  EXPECT_EQ(u->tags, (std::map<std::string, std::string>{{"line", "B"}}));
  auto missing = registry_->UpdateGroup("weld-pm", {.remove_tags = {"nope"}}, "ada");
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  EXPECT_EQ(registry_->UpdateGroup("weld-pm", {}, "ada").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->UpdateGroup("paint-pm", {.description = "x"}, "ada").error().code(), Code::kNotFound);
  EXPECT_EQ(registry_->GetGroup("weld-pm")->tags, u->tags);  // the refused updates changed nothing

  auto h = registry_->History("weld-pm", 0);
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[1].event, "metadata updated");
  EXPECT_EQ((*h)[1].principal, "ada");
  EXPECT_EQ((*h)[1].detail, "description set; tag line=B; tag team removed");

  ASSERT_TRUE(registry_->CreateGroup("paint-pm", "paint", "", {{"line", "A"}}, "pat").has_value());
  EXPECT_EQ(registry_->ListGroups("paint")->size(), 1u);
  EXPECT_EQ(registry_->ListGroups("", "line", "B")->size(), 1u);
  EXPECT_EQ(registry_->ListGroups("", "line")->size(), 2u);
  EXPECT_EQ(registry_->ListGroups("", "line", "C")->size(), 0u);
}

TEST_F(RegistryTest, AGroupOwnedByAnotherProjectRefusesRegistrations) {
  ASSERT_TRUE(registry_->CreateGroup("weld-pm", "weld-pm", "", {}, "sam").has_value());
  auto r = TryRegister(Version("pat"), "paint");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied);
  EXPECT_EQ(r.error().message(), "model group weld-pm belongs to project weld-pm, not paint");
  EXPECT_EQ(CountVersions(), 0);
}

TEST_F(RegistryTest, OnlyApprovedVersionsMayBeChampion) {
  RegisterOne("sam");
  RegisterOne("sam");
  auto pending = registry_->SetAlias("weld-pm", "champion", 1, "eve");
  ASSERT_FALSE(pending.has_value());
  EXPECT_EQ(pending.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(pending.error().message(), HasSubstr("only an Approved version may be champion"));
  EXPECT_EQ(CountEvents(kModelAliasMoved), 0);

  auto challenger = registry_->SetAlias("weld-pm", "challenger", 2, "eve");  // pending is fine here
  ASSERT_TRUE(challenger.has_value()) << challenger.error().ToString();
  EXPECT_EQ(challenger->previous_version, 0);

  ASSERT_TRUE(registry_->Approve("weld-pm", 1, "ada", "").has_value());
  ASSERT_TRUE(registry_->SetAlias("weld-pm", "champion", 1, "eve").has_value());
  ASSERT_TRUE(registry_->Approve("weld-pm", 2, "ada", "").has_value());
  auto moved = registry_->SetAlias("weld-pm", "champion", 2, "eve");
  ASSERT_TRUE(moved.has_value()) << moved.error().ToString();
  EXPECT_EQ(moved->previous_version, 1);
  EXPECT_EQ(registry_->SetAlias("weld-pm", "champion", 2, "eve").error().code(), Code::kConflict);

  EXPECT_EQ(registry_->Resolve("weld-pm", "champion").value(), 2);
  EXPECT_EQ(registry_->Resolve("weld-pm", "challenger").value(), 2);
  EXPECT_EQ(registry_->Resolve("weld-pm", "1").value(), 1);
  EXPECT_EQ(registry_->Resolve("weld-pm", "9").error().code(), Code::kNotFound);
  EXPECT_EQ(registry_->Resolve("paint-pm", "1").error().code(), Code::kNotFound);
  EXPECT_THAT(registry_->Resolve("paint-pm", "champion").error().message(),
              HasSubstr("neither a version number nor an alias: model group paint-pm does not exist"));
  auto unknown = registry_->Resolve("weld-pm", "seven");
  EXPECT_EQ(unknown.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(unknown.error().message(), HasSubstr("aliases: challenger = v2, champion = v2"));
  EXPECT_EQ(registry_->Resolve("weld-pm", "Champion!").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->GetVersion("weld-pm", 2)->aliases,
            (std::vector<std::string>{"challenger", "champion"}));
  EXPECT_EQ(registry_->GetGroup("weld-pm")->aliases,
            (std::map<std::string, int>{{"challenger", 2}, {"champion", 2}}));

  // The champion may not be rejected out from under the release.
  auto reject = registry_->Reject("weld-pm", 2, "ada", "");
  EXPECT_EQ(reject.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(registry_->GetVersion("weld-pm", 2)->status, kApproved);

  // Events: {group, alias, version, previous_version, by}.
  std::vector<Json> moves;
  auto all = bus_->List(100);
  for (const auto& e : *all) {
    if (e.type == kModelAliasMoved) moves.push_back(Json::parse(e.data_json));
  }
  ASSERT_EQ(moves.size(), 3u);
  bool found = false;
  for (const auto& d : moves) {
    if (d["alias"] == "champion" && d["version"] == 2) {
      found = true;
      EXPECT_EQ(d["previous_version"], 1);
      EXPECT_EQ(d["by"], "eve");
      EXPECT_EQ(d["group"], "weld-pm");
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(HistoryEvents("weld-pm", 1),
            (std::vector<std::string>{"registered", "approved", "alias moved", "alias moved"}));
  auto h2 = registry_->History("weld-pm", 2);
  EXPECT_EQ(h2->back().detail, "alias champion now points here (was v1)");
  EXPECT_EQ(h2->back().principal, "eve");
}

TEST_F(RegistryTest, AliasNamesAndDeletion) {
  RegisterOne("sam");
  for (const char* bad : {"", "Champion", "1st", "a_b", "x23456789012345678901234567890123"}) {
    EXPECT_EQ(registry_->SetAlias("weld-pm", bad, 1, "eve").error().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ValidAliasName("shadow-2"));
  EXPECT_EQ(registry_->SetAlias("weld-pm", "shadow", 3, "eve").error().code(), Code::kNotFound);
  EXPECT_EQ(registry_->DeleteAlias("weld-pm", "shadow", "eve").error().code(), Code::kNotFound);
  ASSERT_TRUE(registry_->SetAlias("weld-pm", "shadow", 1, "eve").has_value());
  auto del = registry_->DeleteAlias("weld-pm", "shadow", "eve");
  ASSERT_TRUE(del.has_value()) << del.error().ToString();
  EXPECT_EQ(del->previous_version, 1);
  EXPECT_TRUE(registry_->GetVersion("weld-pm", 1)->aliases.empty());
  EXPECT_EQ(CountEvents(kModelAliasDeleted), 1);
  EXPECT_EQ(HistoryEvents("weld-pm", 1),
            (std::vector<std::string>{"registered", "alias moved", "alias removed"}));
}

TEST_F(RegistryTest, SearchFiltersAndSorts) {
  ASSERT_TRUE(registry_->CreateGroup("weld-pm", "weld-pm", "", {{"line", "A"}}, "sam").has_value());
  ASSERT_TRUE(registry_->CreateGroup("paint-pm", "paint", "", {{"line", "B"}}, "pat").has_value());
  for (double auc : {0.8, 0.95, 0.9}) {
    ModelVersion v = Version("sam");
    v.metrics_json = Json{{"auc", auc}}.dump();
    ASSERT_TRUE(TryRegister(v).has_value());
  }
  ModelVersion paint = Version("pat");
  paint.group = "paint-pm";
  paint.metrics_json = R"({"auc": 0.99})";
  ASSERT_TRUE(TryRegister(paint, "paint").has_value());
  ASSERT_TRUE(registry_->Approve("weld-pm", 2, "ada", "").has_value());
  ASSERT_TRUE(registry_->SetAlias("weld-pm", "champion", 2, "eve").has_value());

  auto versions = [&](const VersionQuery& q) {
    std::vector<std::string> out;
    auto r = registry_->Search(q);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    if (r) {
      for (const auto& v : *r) out.push_back(v.group + "@" + std::to_string(v.version));
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(versions({}), (V{"paint-pm@1", "weld-pm@3", "weld-pm@2", "weld-pm@1"}));  // newest first
  EXPECT_EQ(versions({.project = "weld-pm", .sort = "metric:auc"}),
            (V{"weld-pm@2", "weld-pm@3", "weld-pm@1"}));
  EXPECT_EQ(versions({.sort = "metric:auc:asc", .limit = 2}), (V{"weld-pm@1", "weld-pm@3"}));
  EXPECT_EQ(versions({.status = kApproved}), (V{"weld-pm@2"}));
  EXPECT_EQ(versions({.tag_key = "line", .tag_value = "B"}), (V{"paint-pm@1"}));
  EXPECT_EQ(versions({.alias = "champion"}), (V{"weld-pm@2"}));
  auto f = ParseMetricFilter("auc>=0.9");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(versions({.group = "weld-pm", .metrics = {*f}}), (V{"weld-pm@3", "weld-pm@2"}));
  EXPECT_EQ(versions({.metrics = {*ParseMetricFilter("recall>0")}}), V{});  // no version has recall

  EXPECT_THAT(registry_->Search({.status = "approved"}).error().message(), HasSubstr("status 'approved'"));
  EXPECT_THAT(registry_->Search({.sort = "auc"}).error().message(), HasSubstr("sort 'auc'"));
  EXPECT_EQ(registry_->Search({.limit = 0}).error().code(), Code::kInvalidArgument);
}

TEST_F(RegistryTest, MetricFiltersParseOrSayWhatIsWrong) {
  auto f = ParseMetricFilter("pr_auc < 0.5");
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_EQ(f->metric, "pr_auc");
  EXPECT_EQ(f->op, "<");
  EXPECT_EQ(f->value, 0.5);
  EXPECT_EQ(ParseMetricFilter("auc=0.9")->op, "==");
  EXPECT_THAT(ParseMetricFilter("auc").error().message(), HasSubstr("is not NAME OP NUMBER"));
  EXPECT_THAT(ParseMetricFilter(">=0.9").error().message(), HasSubstr("is not NAME OP NUMBER"));
  EXPECT_THAT(ParseMetricFilter("auc=>0.9").error().message(), HasSubstr("operator '=>'"));
  EXPECT_THAT(ParseMetricFilter("auc>=high").error().message(), HasSubstr("'high' is not a number"));
  EXPECT_THAT(ParseMetricFilter("a(b)>=1").error().message(), HasSubstr("is not a metric name"));
}

// A database written by the v1 registry (the SQL and rows as that code wrote
// them) migrates to v2 with its rows intact and readable.
TEST(RegistryMigrationTest, AVersionOneDatabaseKeepsItsRows) {
  auto db = std::move(*store::OpenSqlite(":memory:"));
  events::EventBus bus(db.get());
  ASSERT_TRUE(bus.Migrate());
  ASSERT_TRUE(store::Migrate(
      *db, "registry",
      {{1, "model-groups-versions",
        "CREATE TABLE model_groups (name TEXT PRIMARY KEY, project TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE model_versions (group_name TEXT NOT NULL REFERENCES model_groups(name), version "
        "INTEGER NOT "
        "NULL, status TEXT NOT NULL, framework TEXT NOT NULL, blob_id TEXT NOT NULL, features_json TEXT NOT "
        "NULL, "
        "metrics_json TEXT NOT NULL, params_json TEXT NOT NULL, dataset TEXT NOT NULL, dataset_version "
        "INTEGER NOT "
        "NULL, run_id TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, decided_by TEXT NOT "
        "NULL, "
        "decided_at TEXT NOT NULL, comment TEXT NOT NULL, PRIMARY KEY (group_name, version));"
        "CREATE TABLE model_version_history (group_name TEXT NOT NULL, version INTEGER NOT NULL, status TEXT "
        "NOT "
        "NULL, principal TEXT NOT NULL, comment TEXT NOT NULL, time TEXT NOT NULL);"}}));
  ASSERT_TRUE(db->ExecScript(
      "INSERT INTO model_groups VALUES ('weld-pm', 'weld-pm', '2026-03-01T10:00:00.000Z');"
      "INSERT INTO model_versions VALUES ('weld-pm', 1, 'Approved', 'xgboost', 'b1', "
      "'[\"force_kn\",\"temp_c\"]', "
      "'{\"auc\":0.93}', '{}', 'weld-telemetry', 1, 'run-1', 'sam', '2026-03-01T10:00:00.000Z', 'ada', "
      "'2026-03-01T11:00:00.000Z', 'fine');"
      "INSERT INTO model_version_history VALUES ('weld-pm', 1, 'PendingManualApproval', 'sam', 'registered', "
      "'2026-03-01T10:00:00.000Z');"
      "INSERT INTO model_version_history VALUES ('weld-pm', 1, 'Approved', 'ada', 'fine', "
      "'2026-03-01T11:00:00.000Z');"));
  RegistryService registry(db.get());
  ASSERT_TRUE(registry.Migrate());
  auto v = registry.GetVersion("weld-pm", 1);
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(v->status, kApproved);
  EXPECT_EQ(v->feature_names, (std::vector<std::string>{"force_kn", "temp_c"}));
  EXPECT_EQ(v->schema, (std::vector<Feature>{{"force_kn", "float"}, {"temp_c", "float"}}));
  EXPECT_EQ(v->registered_by, "sam");
  EXPECT_EQ(v->source, kSourceRun);
  EXPECT_EQ(v->artifact_format, "json");
  EXPECT_EQ(v->decided_by, "ada");
  EXPECT_FALSE(v->card.has_value());
  auto g = registry.GetGroup("weld-pm");
  EXPECT_EQ(g->description, "");
  EXPECT_TRUE(g->tags.empty());
  EXPECT_EQ(g->approved_versions, 1);
  auto h = registry.History("weld-pm", 1);
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].event, "registered");
  EXPECT_EQ((*h)[0].comment, "");
  EXPECT_EQ((*h)[1].event, "approved");
  EXPECT_EQ((*h)[1].comment, "fine");
  // And the migrated database takes new work: v2, history after the old rows, aliases.
  ASSERT_TRUE(registry.SetAlias("weld-pm", "champion", 1, "eve").has_value());
  EXPECT_EQ(registry.History("weld-pm", 1)->back().event, "alias moved");
  ASSERT_TRUE(db->Transaction([&](store::Database& tx) -> Status {
    ModelVersion n{
        .group = "weld-pm", .blob_id = "b2", .feature_names = {"force_kn", "temp_c"}, .created_by = "sam"};
    return registry.Register(tx, n, "weld-pm").has_value() ? Ok() : Internal("register failed");
  }));
  EXPECT_EQ(registry.GetVersion("weld-pm", 2)->status, kPending);
  ASSERT_TRUE(registry.Migrate());  // idempotent
}

}  // namespace
}  // namespace takt::registry
