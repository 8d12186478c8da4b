// Grants and their evaluation into an AccessPlan.
#include <algorithm>
#include <set>

#include "catalog/catalog.h"
#include "catalog/internal.h"
#include "core/json.h"
#include "core/time.h"
#include "iam/iam.h"

namespace takt::catalog {
namespace {

constexpr const char* kGrantColumns =
    "id, effect, subject, dataset, columns_json, exclude_json, row_filter, masks_json, note, created_by, "
    "created_at";

std::vector<std::string> StringList(const std::string& json) {
  std::vector<std::string> out;
  auto j = Json::parse(json, nullptr, false);
  if (j.is_array())
    for (const auto& x : j)
      if (x.is_string()) out.push_back(x.get<std::string>());
  return out;
}

Grant GrantFromRow(const store::Row& r) {
  Grant g;
  g.id = r.Text(0);
  g.effect = r.Text(1);
  g.subject = r.Text(2);
  g.dataset = r.Text(3);
  g.columns = StringList(r.Text(4));
  g.exclude = StringList(r.Text(5));
  g.row_filter = r.Text(6);
  auto masks = Json::parse(r.Text(7), nullptr, false);
  if (masks.is_array()) {
    for (const auto& m : masks) {
      if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
        g.masks.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }
  g.note = r.Text(8);
  g.created_by = r.Text(9);
  g.created_at = r.Text(10);
  return g;
}

bool IsTagRef(std::string_view ref) { return ref.rfind("tag:", 0) == 0; }

// The columns of `schema` that `refs` name (names or tag:<t>). Unknown names
// are reported through `unknown`.
std::set<std::string> Resolve(const std::vector<std::string>& refs, const frame::Schema& schema,
                              const Dataset& d, std::vector<std::string>* unknown) {
  std::set<std::string> out;
  for (const auto& ref : refs) {
    if (IsTagRef(ref)) {
      const std::string tag = ref.substr(4);
      for (const auto& [col, tags] : d.column_tags) {
        if (std::find(tags.begin(), tags.end(), tag) != tags.end() && schema.IndexOf(col) >= 0)
          out.insert(col);
      }
    } else if (schema.IndexOf(ref) >= 0) {
      out.insert(ref);
    } else if (unknown) {
      unknown->push_back(ref);
    }
  }
  return out;
}

bool DatasetMatches(const Grant& g, const Dataset& d) {
  if (g.dataset == "*" || g.dataset == d.name) return true;
  if (IsTagRef(g.dataset)) {
    const std::string tag = g.dataset.substr(4);
    return std::find(d.tags.begin(), d.tags.end(), tag) != d.tags.end();
  }
  return false;
}

// The columns an allow or deny grant covers: include list (or all), minus excludes.
std::set<std::string> Covered(const Grant& g, const frame::Schema& schema, const Dataset& d) {
  std::set<std::string> cols;
  if (g.columns.empty()) {
    for (const auto& f : schema.fields) cols.insert(f.name);
  } else {
    cols = Resolve(g.columns, schema, d, nullptr);
  }
  for (const auto& x : Resolve(g.exclude, schema, d, nullptr)) cols.erase(x);
  return cols;
}

Status ValidateSubject(const iam::IamService& iam, const std::string& subject) {
  if (subject == "*") return Ok();  // everyone but the owner (a public dataset, or a mask rule)
  auto colon = subject.find(':');
  if (colon == std::string::npos) {
    return InvalidArgument("subject '" + subject +
                           "' must be principal:<name>, group:<name>, project:<name> or *");
  }
  const std::string kind = subject.substr(0, colon), name = subject.substr(colon + 1);
  if (kind == "principal") {
    TAKT_RETURN_IF_ERROR(iam.Get(name));
    return Ok();
  }
  if (kind == "group") {
    TAKT_RETURN_IF_ERROR(iam.GetGroup(name));
    return Ok();
  }
  if (kind == "project") {
    TAKT_RETURN_IF_ERROR(iam.GetProject(name));
    return Ok();
  }
  return InvalidArgument("subject '" + subject +
                         "' must be principal:<name>, group:<name>, project:<name> or *");
}

}  // namespace

frame::Schema AccessPlan::OutputSchema() const {
  frame::Schema s;
  for (const auto& c : columns) s.fields.push_back(c.output);
  return s;
}

const ColumnAccess* AccessPlan::Find(std::string_view column) const {
  for (const auto& c : columns)
    if (c.source.name == column) return &c;
  return nullptr;
}

Result<Grant> CatalogService::CreateGrant(Grant g, const std::string& principal) {
  if (g.effect != "allow" && g.effect != "deny" && g.effect != "mask")
    return InvalidArgument("grant effect '" + g.effect + "' is not allow, deny or mask");
  TAKT_RETURN_IF_ERROR(ValidateSubject(*iam_, g.subject));
  if (g.dataset.empty()) return InvalidArgument("a grant needs a dataset (a name, tag:<tag> or *)");
  if (IsTagRef(g.dataset)) {
    TAKT_RETURN_IF_ERROR(ValidateTag(g.dataset.substr(4)));
  } else if (g.dataset != "*") {
    TAKT_RETURN_IF_ERROR(Get(g.dataset));
  }
  if (g.effect == "mask" && g.masks.empty()) return InvalidArgument("a mask rule needs at least one --mask");
  if (g.effect == "mask" && (!g.columns.empty() || !g.exclude.empty() || !g.row_filter.empty()))
    return InvalidArgument("a mask rule takes only masks (no columns, excludes or row filter)");
  if (g.effect == "deny" && (!g.row_filter.empty() || !g.masks.empty()))
    return InvalidArgument("a deny takes columns or excludes only (no row filter or masks)");
  for (const auto& ref : g.columns) {
    if (IsTagRef(ref)) TAKT_RETURN_IF_ERROR(ValidateTag(ref.substr(4)));
  }
  for (const auto& ref : g.exclude) {
    if (IsTagRef(ref)) TAKT_RETURN_IF_ERROR(ValidateTag(ref.substr(4)));
  }
  std::optional<policy::Predicate> filter;
  if (!g.row_filter.empty()) {
    TAKT_ASSIGN_OR_RETURN(filter, policy::Predicate::Parse(g.row_filter));
    g.row_filter = filter->ToString();
  }
  std::vector<std::pair<std::string, policy::Mask>> masks;
  for (const auto& [target, spec] : g.masks) {
    if (target.empty()) return InvalidArgument("mask '" + spec + "' names no column");
    if (IsTagRef(target)) TAKT_RETURN_IF_ERROR(ValidateTag(target.substr(4)));
    TAKT_ASSIGN_OR_RETURN(policy::Mask m, policy::Mask::Parse(spec));
    masks.emplace_back(target, m);
  }
  // A grant on one dataset is checked against its latest schema now.
  if (!IsTagRef(g.dataset) && g.dataset != "*") {
    TAKT_ASSIGN_OR_RETURN(Dataset d, Get(g.dataset));
    if (d.latest_version > 0) {
      TAKT_ASSIGN_OR_RETURN(DatasetVersion v, GetVersion(d.name, 0));
      std::vector<std::string> unknown;
      Resolve(g.columns, v.schema, d, &unknown);
      Resolve(g.exclude, v.schema, d, &unknown);
      for (const auto& [target, m] : masks) {
        if (!IsTagRef(target)) {
          Resolve({target}, v.schema, d, &unknown);
        }
      }
      if (!unknown.empty()) {
        std::string names;
        for (const auto& u : unknown) names += (names.empty() ? "'" : ", '") + u + "'";
        return InvalidArgument("dataset " + d.name + " v" + std::to_string(v.version) + " has no column " +
                               names);
      }
      if (filter) {
        auto bound = filter->Bind(v.schema);
        if (!bound) return std::unexpected(bound.error());
      }
      for (const auto& [target, m] : masks) {
        for (const auto& col : Resolve({target}, v.schema, d, nullptr)) {
          TAKT_RETURN_IF_ERROR(m.CheckApplies(v.schema.fields[v.schema.IndexOf(col)]));
        }
      }
    }
  }
  g.id = NewId("g");
  g.created_by = principal;
  g.created_at = NowIso();
  Json masks_json = Json::array();
  for (const auto& [target, m] : masks) masks_json.push_back({target, m.ToString()});
  g.masks.clear();
  for (const auto& [target, m] : masks) g.masks.emplace_back(target, m.ToString());
  TAKT_RETURN_IF_ERROR(db_->Exec(
      std::string("INSERT INTO grants (") + kGrantColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {g.id, g.effect, g.subject, g.dataset, Json(g.columns).dump(), Json(g.exclude).dump(), g.row_filter,
       masks_json.dump(), g.note, g.created_by, g.created_at}));
  return g;
}

Result<std::vector<Grant>> CatalogService::ListGrants(std::string_view dataset,
                                                      std::string_view subject) const {
  std::string sql = std::string("SELECT ") + kGrantColumns + " FROM grants WHERE 1=1";
  std::vector<store::Value> params;
  if (!dataset.empty()) {
    sql += " AND dataset = ?";
    params.push_back(std::string(dataset));
  }
  if (!subject.empty()) {
    sql += " AND subject = ?";
    params.push_back(std::string(subject));
  }
  sql += " ORDER BY created_at, id";
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<Grant> out;
  for (const auto& r : rows) out.push_back(GrantFromRow(r));
  return out;
}

Status CatalogService::DeleteGrant(std::string_view id) {
  TAKT_ASSIGN_OR_RETURN(int64_t n, db_->Exec("DELETE FROM grants WHERE id = ?", {std::string(id)}));
  if (n == 0) return NotFound("grant " + std::string(id) + " does not exist");
  return Ok();
}

Result<AccessPlan> CatalogService::PlanAccess(std::string_view principal, std::string_view dataset,
                                              int version) const {
  TAKT_ASSIGN_OR_RETURN(Dataset d, Get(dataset));
  TAKT_ASSIGN_OR_RETURN(DatasetVersion v, GetVersion(d.name, version));
  TAKT_ASSIGN_OR_RETURN(std::vector<std::string> subjects, iam_->SubjectsOf(principal));
  AccessPlan plan;
  plan.principal = std::string(principal);
  plan.dataset = d.name;
  plan.version = v.version;
  plan.owner = d.owner == principal;
  std::set<std::string> mine(subjects.begin(), subjects.end());
  if (!plan.owner) mine.insert("*");

  TAKT_ASSIGN_OR_RETURN(auto all, ListGrants());
  std::vector<Grant> applicable;
  for (auto& g : all) {
    if (mine.count(g.subject) && DatasetMatches(g, d)) applicable.push_back(std::move(g));
  }

  // Deny on the whole dataset wins over everything.
  for (const auto& g : applicable) {
    if (g.effect == "deny" && g.columns.empty() && g.exclude.empty()) {
      return PermissionDenied(std::string(principal) + " may not read dataset " + d.name +
                              ": explicit deny " + g.id + " for " + g.subject);
    }
  }

  // Allows: union of columns, OR of row filters. A grant whose filter does not
  // fit this version's schema grants nothing (fail closed).
  std::set<std::string> allowed;
  std::vector<policy::Predicate> filters;
  bool unfiltered = plan.owner;
  if (plan.owner) {
    for (const auto& f : v.schema.fields) allowed.insert(f.name);
  }
  std::vector<const Grant*> used;
  for (const auto& g : applicable) {
    if (g.effect != "allow") continue;
    if (!g.row_filter.empty()) {
      auto p = policy::Predicate::Parse(g.row_filter);
      Status bound = p ? p->Bind(v.schema) : Status(std::unexpected(p.error()));
      if (!bound) {
        plan.notes.push_back("grant " + g.id + " skipped: " + bound.error().message());
        continue;
      }
      filters.push_back(std::move(*p));
    } else {
      unfiltered = true;
    }
    for (const auto& c : Covered(g, v.schema, d)) allowed.insert(c);
    used.push_back(&g);
    plan.grants.push_back(g.id);
  }
  if (used.empty() && !plan.owner) {
    return PermissionDenied(std::string(principal) + " has no grant to read dataset " + d.name +
                            " (default deny): its owner " + d.owner +
                            " can share it with `takt grant create --to principal:" + std::string(principal) +
                            " --dataset " + d.name + "`");
  }
  // Column denies.
  for (const auto& g : applicable) {
    if (g.effect != "deny") continue;
    for (const auto& c : Covered(g, v.schema, d)) allowed.erase(c);
    plan.grants.push_back(g.id);
  }

  // Masks from the allows that apply and from mask rules; the strongest wins.
  std::map<std::string, std::pair<policy::Mask, std::string>> masks;
  std::set<std::string> unmaskable;
  for (const auto& g : applicable) {
    if (g.effect == "deny") continue;
    if (g.effect == "allow" && std::find(used.begin(), used.end(), &g) == used.end()) continue;
    if (g.effect == "mask" && !g.masks.empty()) plan.grants.push_back(g.id);
    for (const auto& [target, spec] : g.masks) {
      auto m = policy::Mask::Parse(spec);
      for (const auto& col : Resolve({target}, v.schema, d, nullptr)) {
        if (!m) {
          unmaskable.insert(col);
          continue;
        }
        const auto& field = v.schema.fields[v.schema.IndexOf(col)];
        if (!m->CheckApplies(field)) {
          unmaskable.insert(col);
          plan.notes.push_back("column " + col + " withheld: mask " + spec + " of grant " + g.id +
                               " cannot apply to a " + std::string(frame::TypeName(field.type)) + " column");
          continue;
        }
        auto it = masks.find(col);
        if (it == masks.end()) {
          masks.emplace(col, std::make_pair(*m, g.id));
        } else if (&policy::Strongest(it->second.first, *m) != &it->second.first) {
          it->second = {*m, g.id};
        }
      }
    }
  }
  for (const auto& c : unmaskable) allowed.erase(c);  // fail closed: never unmasked

  for (const auto& f : v.schema.fields) {
    if (!allowed.count(f.name)) continue;
    ColumnAccess ca;
    ca.source = f;
    ca.output = f;
    if (auto it = masks.find(f.name); it != masks.end()) {
      ca.mask = it->second.first;
      ca.mask_grant = it->second.second;
      ca.output = ca.mask->OutputField(f);
    }
    plan.columns.push_back(std::move(ca));
  }
  if (plan.columns.empty()) {
    return PermissionDenied(std::string(principal) + " may read no column of dataset " + d.name +
                            ": every granted column is denied");
  }
  if (!unfiltered) {
    policy::Predicate any = filters.size() == 1 ? filters.front() : policy::Predicate::Or(filters);
    TAKT_RETURN_IF_ERROR(any.Bind(v.schema));
    std::set<std::string> withheld;
    for (const auto& [col, m] : masks) withheld.insert(col);
    plan.row_filter_text = any.ToString(withheld);
    plan.row_filter = std::move(any);
  }
  std::sort(plan.grants.begin(), plan.grants.end());
  plan.grants.erase(std::unique(plan.grants.begin(), plan.grants.end()), plan.grants.end());
  return plan;
}

}  // namespace takt::catalog
