#pragma once
// What a shard's simulated hosts finish later (a delayed start, an in-place
// update, a maintenance restart), on one timer per shard. Each kind of work
// takes one fixed duration (--start-delay, --update-time,
// --maintenance-time), so work of one duration falls due in the order it was
// queued: a queue per duration, and the timer set for the earliest head.
// A coroutine and a timer per command cost ~1.2 KB each: P7's 100,000
// maintenance restarts grew the simulator by 117 MB of fresh heap, against
// 16 MB with this.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tranche::sim {

class DueWork {
 public:
  using Clock = std::chrono::steady_clock;
  // Called with the time it was due, to measure how late it ran.
  using Work = std::function<void(Clock::time_point due)>;

  explicit DueWork(boost::asio::io_context& io) : timer_(io) {}

  // Runs `work` on the io_context once `delay` has passed.
  void after(Clock::duration delay, Work work);
  size_t pending() const;

 private:
  struct Item {
    Clock::time_point due;
    Work work;
  };
  void arm(Clock::time_point at);
  void run_due();

  boost::asio::steady_timer timer_;
  std::map<Clock::duration, std::deque<Item>> queues_;  // by delay, each in due order
  std::optional<Clock::time_point> armed_for_;
  uint64_t generation_ = 0;  // of the timer's wait: one it replaced finds it changed
};

}  // namespace tranche::sim
