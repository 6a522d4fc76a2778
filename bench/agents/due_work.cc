#include "due_work.h"

#include <utility>

namespace tranche::sim {

void DueWork::after(Clock::duration delay, Work work) {
  const Clock::time_point due = Clock::now() + delay;
  queues_[delay].push_back(Item{due, std::move(work)});
  if (!armed_for_ || due < *armed_for_) {
    arm(due);
  }
}

size_t DueWork::pending() const {
  size_t n = 0;
  for (const auto& [delay, queue] : queues_) {
    n += queue.size();
  }
  return n;
}

void DueWork::arm(Clock::time_point at) {
  armed_for_ = at;
  timer_.expires_at(at);  // a wait set before ends aborted; the generation tells it
  timer_.async_wait([this, generation = ++generation_](const boost::system::error_code&) {
    if (generation == generation_) {
      run_due();
    }
  });
}

void DueWork::run_due() {
  armed_for_.reset();
  const Clock::time_point now = Clock::now();
  std::deque<Item> due;
  for (auto& [delay, queue] : queues_) {
    while (!queue.empty() && queue.front().due <= now) {
      due.push_back(std::move(queue.front()));
      queue.pop_front();
    }
  }
  for (Item& item : due) {
    item.work(item.due);  // may queue more: after() arms the timer for it
  }
  std::optional<Clock::time_point> next;
  for (const auto& [delay, queue] : queues_) {
    if (!queue.empty() && (!next || queue.front().due < *next)) {
      next = queue.front().due;
    }
  }
  if (next && (!armed_for_ || *next < *armed_for_)) {
    arm(*next);
  }
}

}  // namespace tranche::sim
