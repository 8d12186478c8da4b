// Async handlers: the response comes later, from another thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "http/server.h"
#include "http/testing.h"

namespace takt::http {
namespace {

using namespace std::chrono_literals;

// Answers requests from a thread of its own, after a delay.
class LateResponder {
 public:
  LateResponder() : thread_([this] { Run(); }) {}
  ~LateResponder() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    thread_.join();
  }
  void Add(std::string body, Responder r, std::chrono::milliseconds delay) {
    std::lock_guard lock(mu_);
    pending_.push_back({std::move(body), std::move(r), std::chrono::steady_clock::now() + delay});
    cv_.notify_all();
  }

 private:
  struct Item {
    std::string body;
    Responder respond;
    std::chrono::steady_clock::time_point at;
  };
  void Run() {
    std::unique_lock lock(mu_);
    while (!stop_ || !pending_.empty()) {
      if (pending_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (std::chrono::steady_clock::now() < pending_.front().at) {
        cv_.wait_until(lock, pending_.front().at);
        continue;
      }
      Item item = std::move(pending_.front());
      pending_.pop_front();
      lock.unlock();
      item.respond(JsonResponse(200, "{\"echo\":\"" + item.body + "\"}"));
      item.respond(JsonResponse(500, "{}"));  // a second answer is ignored
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> pending_;
  bool stop_ = false;
  std::thread thread_;
};

Route AsyncRoute(AsyncHandler h) {
  Route route;
  route.method = "POST";
  route.pattern = "/late";
  route.is_public = true;
  route.async_handler = std::move(h);
  return route;
}

TEST(AsyncHandlerTest, AnswersFromAnotherThreadAndRunsTheAfterHook) {
  auto responder = std::make_shared<LateResponder>();
  auto router = std::make_shared<Router>();
  router->Add(AsyncRoute(
      [responder](Request& req, Responder respond) { responder->Add(req.body, std::move(respond), 20ms); }));
  std::atomic<int> after{0};
  ServerOptions options;
  options.threads = 1;  // one pool thread: it must not wait for the answers
  auto server =
      testing::StartServer(router, options, {}, [&](const Route&, const Request&, const Response& r) {
        if (r.status == 200) ++after;
      });
  ASSERT_NE(server, nullptr);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      Client client = testing::ClientFor(*server);
      for (int k = 0; k < 5; ++k) {
        std::string body = std::to_string(i) + "-" + std::to_string(k);
        auto r = client.Send("POST", "/late", body, "text/plain");
        if (r && r->status == 200 && r->body == "{\"echo\":\"" + body + "\"}") ++ok;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(after.load(), 40);
}

TEST(AsyncHandlerTest, AThrowingHandlerIs500AndAnswersAfterStopAreDropped) {
  auto router = std::make_shared<Router>();
  Responder kept;
  std::mutex mu;
  router->Add(AsyncRoute([&](Request& req, Responder respond) {
    if (req.body == "throw") throw std::runtime_error("boom");
    std::lock_guard lock(mu);
    kept = std::move(respond);  // never answered while the server runs
  }));
  auto server = testing::StartServer(router);
  ASSERT_NE(server, nullptr);
  Client client = testing::ClientFor(*server);
  auto r = client.Send("POST", "/late", "throw", "text/plain");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->status, 500);
  std::thread waiting([&] {
    Client c = testing::ClientFor(*server);
    (void)c.Send("POST", "/late", "hold", "text/plain");  // cut off by Stop
  });
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard lock(mu);
      if (kept) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  server->Stop();
  waiting.join();
  server.reset();
  std::lock_guard lock(mu);
  ASSERT_TRUE(static_cast<bool>(kept));
  kept(JsonResponse(200, "{}"));  // the server is gone: dropped, no crash
}

TEST(AsyncHandlerTest, ARouteWithBothKindsOfHandlerIsInvalid) {
  Router router;
  Route route = AsyncRoute([](Request&, Responder r) { r(JsonResponse(200, "{}")); });
  route.handler = [](Request&) { return JsonResponse(200, "{}"); };
  router.Add(route);
  EXPECT_FALSE(router.Validate().has_value());
}

}  // namespace
}  // namespace takt::http
