// File: api/routes.h
//
// The REST API (/api/v1), the inference protocols (/v2, /endpoints) and the
// hooks that authenticate, authorise and audit every request. Every route
// names the action it needs; a route without one is refused by the router
// test. Handlers are thin: parse, call one service, render.
#pragma once

#include <memory>

#include "api/platform.h"
#include "http/router.h"
#include "http/server.h"

namespace takt::api {

std::shared_ptr<http::Router> BuildRouter(Platform& platform);

// Before: bearer token → principal (401), action → decision (403).
// After: an audit record for every mutation, every data read and every
// refused request; an access log line at debug level.
void InstallHooks(http::Server& server, Platform& platform);

}  // namespace takt::api
