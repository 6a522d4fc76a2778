// How long the agent waits before it connects to the controller again:
// a step of 100 ms after a session that was welcomed, doubling with each
// failed try up to 5 s, each wait drawn between the step and twice the
// step, so that the agents of a fleet that lost their controller together
// (a restart) do not come back in waves of the whole fleet at the same
// instants ("exponential backoff with jitter"). After a refusal (a version
// the controller does not accept, a wrong token) it waits 30 s: what
// changes that is an operator's doing, not a retry. The agent simulator
// (bench/agents) waits by the same policy, so that what P5 measures is
// the product's.

#pragma once

#include <algorithm>
#include <chrono>
#include <random>

namespace tranche::agent {

class ReconnectBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirst{100};
  static constexpr std::chrono::milliseconds kMax{5000};
  static constexpr std::chrono::milliseconds kRefused{30000};

  // The wait before the next try, after a session that ended as said;
  // `random` (a uniform random bit generator) draws the jitter. The caller
  // owns it: the simulator's 10,000 hosts share one per thread.
  template <class Random>
  std::chrono::milliseconds after(bool welcomed, bool refused, Random& random) {
    if (refused) {
      step_ = kMax;  // a failed try after it waits the longest step
      return kRefused;
    }
    step_ = welcomed ? kFirst : std::min(step_ * 2, kMax);
    std::uniform_int_distribution<std::chrono::milliseconds::rep> jitter(0, step_.count());
    return step_ + std::chrono::milliseconds(jitter(random));
  }

 private:
  std::chrono::milliseconds step_ = kFirst;
};

}  // namespace tranche::agent
