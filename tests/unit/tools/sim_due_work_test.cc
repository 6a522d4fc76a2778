// The agent simulator's DueWork (bench/agents/due_work.h): work runs once its
// delay has passed, in due order across delays, and a sooner item queued
// behind a later one moves the timer up. Each test runs the io_context until
// it has no work left, or stops it from the work: no sleeping.

#include "due_work.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tranche::sim {
namespace {

using namespace std::chrono_literals;
using Clock = DueWork::Clock;

TEST(SimDueWorkTest, RunsEachItemNoEarlierThanItsDelayInDueOrder) {
  boost::asio::io_context io;
  DueWork due(io);
  std::vector<std::string> ran;
  const Clock::time_point start = Clock::now();
  const auto record = [&](std::string name, Clock::duration delay) {
    due.after(delay, [&, name, delay](Clock::time_point when_due) {
      EXPECT_GE(Clock::now() - start, delay) << name;
      EXPECT_GE(Clock::now(), when_due) << name;
      ran.push_back(name);
    });
  };
  record("slow-1", 30ms);
  record("fast-1", 5ms);
  record("slow-2", 30ms);
  record("fast-2", 5ms);
  EXPECT_EQ(due.pending(), 4u);
  io.run();
  EXPECT_EQ(ran, (std::vector<std::string>{"fast-1", "fast-2", "slow-1", "slow-2"}));
  EXPECT_EQ(due.pending(), 0u);
}

// The timer is set for the earliest item, not for the head of the first
// queue: the sooner items run long before the later ones are due (an hour,
// so that no pause of a loaded machine can make them due too).
TEST(SimDueWorkTest, ASoonerItemQueuedBehindALaterOneMovesTheTimerUp) {
  boost::asio::io_context io;
  DueWork due(io);
  std::vector<std::string> ran;
  due.after(1h, [&](Clock::time_point) { ran.push_back("slow"); });
  due.after(5ms, [&](Clock::time_point) { ran.push_back("fast-1"); });
  due.after(5ms, [&](Clock::time_point) {
    ran.push_back("fast-2");
    io.stop();
  });
  // Without the move the fast ones would wait for the hour: given up on.
  boost::asio::steady_timer given_up(io, 10s);
  given_up.async_wait([&](boost::system::error_code) { io.stop(); });
  io.run();
  EXPECT_EQ(ran, (std::vector<std::string>{"fast-1", "fast-2"}));
  EXPECT_EQ(due.pending(), 1u);
}

TEST(SimDueWorkTest, WorkMayQueueMoreWork) {
  boost::asio::io_context io;
  DueWork due(io);
  int runs = 0;
  due.after(5ms, [&](Clock::time_point) {
    ++runs;
    due.after(5ms, [&](Clock::time_point) { ++runs; });
  });
  io.run();
  EXPECT_EQ(runs, 2);
}

TEST(SimDueWorkTest, NothingQueuedLeavesTheIoContextFree) {
  boost::asio::io_context io;
  DueWork due(io);
  EXPECT_EQ(io.run(), 0u);  // no timer armed: run() returns at once
}

}  // namespace
}  // namespace tranche::sim
