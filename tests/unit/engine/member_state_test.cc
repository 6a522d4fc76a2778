#include "engine/fleet/member_state.h"

#include <gtest/gtest.h>

#include <set>

namespace tranche {
namespace {

using S = MemberState;

const S kAll[] = {S::kCreated,  S::kStarting, S::kActive,     S::kUpdating, S::kMaintenance,
                  S::kDraining, S::kStopping, S::kTerminated, S::kFailed,   S::kUnreachable};

// Every edge of model.md's lifecycle as this project reads it; any pair not
// listed must be refused.
const std::set<std::pair<S, S>> kAllowed = {
    {S::kCreated, S::kStarting},     {S::kCreated, S::kFailed},       {S::kCreated, S::kTerminated},
    {S::kStarting, S::kActive},      {S::kStarting, S::kFailed},      {S::kStarting, S::kStopping},
    {S::kStarting, S::kUnreachable}, {S::kActive, S::kUpdating},      {S::kActive, S::kMaintenance},
    {S::kActive, S::kDraining},      {S::kActive, S::kStopping},      {S::kActive, S::kFailed},
    {S::kActive, S::kUnreachable},   {S::kUpdating, S::kStarting},    {S::kUpdating, S::kFailed},
    {S::kUpdating, S::kStopping},    {S::kUpdating, S::kUnreachable}, {S::kMaintenance, S::kStarting},
    {S::kMaintenance, S::kFailed},   {S::kMaintenance, S::kStopping}, {S::kMaintenance, S::kUnreachable},
    {S::kDraining, S::kStopping},    {S::kDraining, S::kFailed},      {S::kDraining, S::kUnreachable},
    {S::kStopping, S::kTerminated},  {S::kStopping, S::kUnreachable}, {S::kFailed, S::kStopping},
    {S::kFailed, S::kTerminated},    {S::kUnreachable, S::kStarting}, {S::kUnreachable, S::kActive},
    {S::kUnreachable, S::kStopping}, {S::kUnreachable, S::kFailed},   {S::kUnreachable, S::kTerminated},
};

TEST(MemberState, EveryTransitionIsAsSpecified) {
  for (S from : kAll) {
    for (S to : kAll) {
      EXPECT_EQ(can_transition(from, to), kAllowed.contains({from, to})) << to_string(from) << " -> " << to_string(to);
    }
  }
}

TEST(MemberState, TerminatedIsFinal) {
  for (S to : kAll) {
    EXPECT_FALSE(can_transition(S::kTerminated, to));
  }
}

TEST(MemberState, NamesRoundTrip) {
  for (S s : kAll) {
    EXPECT_EQ(member_state_from_string(to_string(s)), s);
  }
  EXPECT_FALSE(member_state_from_string("Running").has_value());
}

TEST(MemberState, LiveStatesCountTowardDesired) {
  EXPECT_TRUE(is_live(S::kActive));
  EXPECT_TRUE(is_live(S::kStarting));
  EXPECT_TRUE(is_live(S::kCreated));
  EXPECT_FALSE(is_live(S::kFailed));
  EXPECT_FALSE(is_live(S::kUnreachable));
  EXPECT_FALSE(is_live(S::kStopping));
  EXPECT_FALSE(may_run(S::kTerminated));
  EXPECT_TRUE(may_run(S::kUnreachable));
}

}  // namespace
}  // namespace tranche
