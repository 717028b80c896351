// The tests' etcd (etcd_process.h: one real member on loopback) and a
// bounded wait for one asynchronous client call.
#pragma once
#include <future>
#include <stdexcept>
#include <string>
#include <vector>

#include "etcd_process.h"
#include "net_test_support.h"
#include "veer/etcd_client.h"

namespace veer::etcd {

using namespace std::chrono_literals;

// Runs one asynchronous client call on the io thread and waits for its callback (bounded).
template <typename Answer, typename Start>
std::pair<Status, Answer> wait_call(net::test::IoThread& io, Start start) {
  auto promise = std::make_shared<std::promise<std::pair<Status, Answer>>>();
  auto future = promise->get_future();
  boost::asio::post(io.io, [start, promise] {
    start([promise](Status s, Answer a) { promise->set_value({std::move(s), std::move(a)}); });
  });
  if (future.wait_for(20s) != std::future_status::ready) throw std::runtime_error("no callback within 20 s");
  return future.get();
}

}  // namespace veer::etcd
