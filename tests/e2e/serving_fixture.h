// File: tests/e2e/serving_fixture.h
//
// The setup the serving end-to-end suites share: the real `takt server` with
// the weld-pm project (members sam, a data scientist, and eve, an ML
// engineer; ada approves), and the notebook's XGBoost model registered as
// weld-pm v1, approved and released to the dev stage, so that the endpoint
// weld-pm-dev serves it. Each suite passes its own release configuration and
// may add principals between the two steps.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "e2e/testkit.h"
#include "http/client.h"

namespace takt::testkit {

// `body` parsed as JSON; a test failure (and a discarded value) if it is not JSON.
nlohmann::json ParseBody(const std::string& body);
// A CLI's `-o json` output parsed; a test failure naming its stderr if it is not JSON.
nlohmann::json ParseOut(const CliResult& r);

class WeldPmServingTest : public ::testing::Test {
 protected:
  // Starts the server; creates sam, eve and ada and the project weld-pm with
  // sam and eve as members. Call with ASSERT_NO_FATAL_FAILURE.
  void StartServerWithProject();
  // Trains the notebook's models into dir_, puts `release_yaml` as weld-pm's
  // release configuration, registers weld.ubj as v1, approves it and waits
  // until its release has Succeeded. Call with ASSERT_NO_FATAL_FAILURE.
  void ReleaseVersion1(const std::string& release_yaml);
  // A client of the server sending `token` as a bearer token ("" for none).
  http::Client ClientAs(const std::string& token);

  TaktServer server_;
  std::string sam_, eve_, ada_;
  std::string dir_;  // the notebook's directory
};

}  // namespace takt::testkit
