// The agent simulator's DueWork (bench/agents/due_work.h): work runs once its
// delay has passed, in due order across delays, and a sooner item queued
// behind a later one moves the timer up. Each test runs the io_context until
// it has no work left: no sleeping.

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
  std::vector<size_t> pending_then;
  const auto record = [&](std::string name, Clock::duration delay) {
    due.after(delay, [&, name, delay](Clock::time_point when_due) {
      EXPECT_GE(Clock::now() - start, delay) << name;
      EXPECT_GE(Clock::now(), when_due) << name;
      ran.push_back(name);
      pending_then.push_back(due.pending());
    });
  };
  record("slow-1", 300ms);
  record("fast-1", 5ms);  // queued after a later one: the timer moves up
  record("slow-2", 300ms);
  record("fast-2", 5ms);
  EXPECT_EQ(due.pending(), 4u);
  io.run();
  EXPECT_EQ(ran, (std::vector<std::string>{"fast-1", "fast-2", "slow-1", "slow-2"}));
  // The fast ones ran on their own, long before the slow ones were due.
  EXPECT_EQ(pending_then, (std::vector<size_t>{2, 2, 0, 0}));
  EXPECT_EQ(due.pending(), 0u);
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
