#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "agent/journal.h"
#include "agent_test_util.h"

namespace tranche::agent {
namespace {

using test::read_file;
using test::TempDir;
using test::write_file;
using ::testing::HasSubstr;

JournalState sample_state() {
  JournalState state;
  state.host_id = "h-1";
  state.host_token = "secret-token";

  JournalMember running;
  running.spec.member = "web/3";
  running.spec.app = "shop";
  running.spec.cluster = "web";
  running.spec.revision = 7;
  running.spec.version = "1.4.2";
  running.spec.command = {"./bin/web", "--port", "${PORT_HTTP}"};
  running.spec.env = {{"LOG_LEVEL", "info"}, {"EMPTY", ""}};
  running.spec.workdir = "/srv/web";
  running.spec.ports = {"http", "admin-api"};
  running.health = {{"http", {{"port", "http"}, {"path", "/healthz"}}}, {"intervalSeconds", 1}};
  running.stats = nullptr;
  MemberProcess process;
  process.member = "web/3";
  process.pid = 4242;
  process.start_ticks = 123456789012345ULL;  // beyond 32 bits
  process.ports = {{"http", 40001}, {"admin-api", 40002}};
  process.log_dir = "/var/lib/tranche/members/web-3";
  running.process = process;
  running.state = "Running";
  running.healthy = true;
  state.members["web/3"] = running;

  JournalMember exited;
  exited.spec.member = "db/0";
  exited.stats = {{"http", {{"port", "main"}, {"path", "/admin/load"}}}};
  exited.state = "Exited";
  exited.exit_code = 3;
  state.members["db/0"] = exited;

  state.commands.push_back({"c1", "start", "web/3", true, nlohmann::json{{"ok", true}}, true});
  state.commands.push_back({"c2", "stop", "db/0", true, nlohmann::json(nullptr), false});
  state.commands.push_back({"c3", "drain", "web/3", false, std::nullopt, false});
  return state;
}

TEST(JournalTest, RoundTripsEveryField) {
  TempDir dir;
  Journal journal(dir.path() / "agent");
  const auto state = sample_state();
  ASSERT_TRUE(journal.save(state));
  const auto loaded = test::ok(journal.load());

  EXPECT_EQ(to_json(loaded), to_json(state));
  EXPECT_EQ(loaded.host_id, "h-1");
  EXPECT_EQ(loaded.host_token, "secret-token");
  ASSERT_EQ(loaded.members.size(), 2u);
  const auto& web = loaded.members.at("web/3");
  EXPECT_EQ(web.spec.command, state.members.at("web/3").spec.command);
  EXPECT_EQ(web.spec.env.at("EMPTY"), "");
  EXPECT_EQ(web.spec.ports, (std::vector<std::string>{"http", "admin-api"}));
  EXPECT_EQ(web.spec.revision, 7);
  EXPECT_EQ(web.health["http"]["path"], "/healthz");
  EXPECT_TRUE(web.stats.is_null());
  ASSERT_TRUE(web.process);
  EXPECT_EQ(web.process->pid, 4242);
  EXPECT_EQ(web.process->start_ticks, 123456789012345ULL);
  EXPECT_EQ(web.process->ports.at("admin-api"), 40002);
  EXPECT_EQ(web.process->log_dir, std::filesystem::path("/var/lib/tranche/members/web-3"));
  EXPECT_EQ(web.exit_code, std::nullopt);
  EXPECT_TRUE(web.healthy);
  const auto& db = loaded.members.at("db/0");
  EXPECT_FALSE(db.healthy);
  EXPECT_FALSE(db.process);
  EXPECT_EQ(db.exit_code, 3);
  EXPECT_EQ(db.state, "Exited");

  ASSERT_EQ(loaded.commands.size(), 3u);
  EXPECT_EQ(loaded.commands[0].id, "c1");
  EXPECT_TRUE(loaded.commands[0].done);
  EXPECT_TRUE(loaded.commands[0].result_acked);
  EXPECT_EQ(*loaded.commands[0].result, (nlohmann::json{{"ok", true}}));
  ASSERT_TRUE(loaded.commands[1].result);  // a null result is still a result
  EXPECT_TRUE(loaded.commands[1].result->is_null());
  EXPECT_FALSE(loaded.commands[2].result);
  EXPECT_FALSE(loaded.commands[2].done);
  EXPECT_EQ(loaded.commands[2].type, "drain");
}

TEST(JournalTest, JsonRoundTripWithoutFiles) {
  const auto state = sample_state();
  const auto back = journal_from_json(to_json(state));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(to_json(*back), to_json(state));
  const auto empty = journal_from_json(nlohmann::json::object());
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->members.empty());
}

TEST(JournalTest, RoundTripsAPendingUpdate) {
  TempDir dir;
  Journal journal(dir.path());
  JournalState state = sample_state();
  JournalMember& web = state.members.at("web/3");
  web.state = "Updating";
  PendingUpdate update;
  update.command_id = "update:web/3:8";
  update.spec = web.spec;
  update.spec.revision = 8;
  update.spec.version = "1.5.0";
  update.spec.env["FEATURE"] = "on";
  update.spec.ports = {"http"};
  update.health = {{"tcp", {{"port", "http"}}}};
  update.stats = {{"http", {{"port", "http"}, {"path", "/admin/load"}}}};
  update.grace_ms = 2500;
  update.note = "update hook succeeded";
  web.update = update;
  ASSERT_TRUE(journal.save(state));

  const auto loaded = test::ok(journal.load());
  EXPECT_EQ(to_json(loaded), to_json(state));
  const JournalMember& back = loaded.members.at("web/3");
  EXPECT_EQ(back.state, "Updating");
  EXPECT_EQ(back.spec.revision, 7);  // the member's own template is still the old one
  ASSERT_TRUE(back.update);
  EXPECT_EQ(back.update->command_id, "update:web/3:8");
  EXPECT_EQ(back.update->spec.revision, 8);
  EXPECT_EQ(back.update->spec.version, "1.5.0");
  EXPECT_EQ(back.update->spec.member, "web/3");
  EXPECT_EQ(back.update->spec.command, web.spec.command);
  EXPECT_EQ(back.update->spec.env.at("FEATURE"), "on");
  EXPECT_EQ(back.update->spec.ports, (std::vector<std::string>{"http"}));
  EXPECT_EQ(back.update->health["tcp"]["port"], "http");
  EXPECT_EQ(back.update->stats["http"]["path"], "/admin/load");
  EXPECT_EQ(back.update->grace_ms, 2500);
  EXPECT_EQ(back.update->note, "update hook succeeded");
  EXPECT_FALSE(loaded.members.at("db/0").update);
}

TEST(JournalTest, AJournalWithoutUpdatesReadsAsNone) {
  auto doc = to_json(sample_state());
  doc["members"]["web/3"].erase("update");  // written before updates existed
  const auto back = journal_from_json(doc);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_FALSE(back->members.at("web/3").update);
  doc["members"]["web/3"]["update"] = "soon";
  EXPECT_FALSE(journal_from_json(doc));
}

TEST(JournalTest, MissingJournalIsEmpty) {
  TempDir dir;
  const auto state = test::ok(Journal(dir.path() / "never-created").load());
  EXPECT_EQ(state.host_id, "");
  EXPECT_TRUE(state.members.empty());
  EXPECT_TRUE(state.commands.empty());
}

TEST(JournalTest, CorruptJournalIsAnError) {
  TempDir dir;
  write_file(dir / "journal.json", "{\"hostId\": \"h-1\", \"members\": {");  // torn
  const auto result = Journal(dir.path()).load();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kInternal);
  EXPECT_THAT(result.error().message, HasSubstr((dir / "journal.json").string()));

  write_file(dir / "journal.json", R"({"members": {"web/3": {"spec": {"revision": "seven"}}}})");
  const auto wrong_type = Journal(dir.path()).load();
  ASSERT_FALSE(wrong_type);
  EXPECT_EQ(wrong_type.error().code, ErrorCode::kInternal);
  EXPECT_THAT(wrong_type.error().message, HasSubstr((dir / "journal.json").string()));

  write_file(dir / "journal.json", "[1, 2]");
  EXPECT_FALSE(Journal(dir.path()).load());
}

TEST(JournalTest, SaveIsAtomicAndPrivate) {
  TempDir dir;
  Journal journal(dir.path());
  // A temp file left by an agent killed mid-save changes nothing.
  write_file(dir / "journal.json.tmp", "garbage");
  auto state = sample_state();
  ASSERT_TRUE(journal.save(state));
  EXPECT_FALSE(std::filesystem::exists(dir / "journal.json.tmp"));
  struct stat st {};
  ASSERT_EQ(::stat((dir / "journal.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // holds the host token

  state.host_token = "rotated";
  state.members.erase("db/0");
  ASSERT_TRUE(journal.save(state));
  EXPECT_FALSE(std::filesystem::exists(dir / "journal.json.tmp"));
  const auto loaded = test::ok(journal.load());
  EXPECT_EQ(loaded.host_token, "rotated");
  EXPECT_EQ(loaded.members.size(), 1u);
  EXPECT_EQ(journal.state_dir(), dir.path());
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()), 1);
}

TEST(JournalTest, SaveFailsCleanlyWhenTheDirIsAFile) {
  TempDir dir;
  write_file(dir / "file", "x");
  const auto saved = Journal(dir / "file").save(sample_state());
  ASSERT_FALSE(saved);
  EXPECT_EQ(saved.error().code, ErrorCode::kUnavailable);
}

JournalState many_commands() {
  JournalState state;
  state.commands.push_back({"open-early", "start", "web/1", false, std::nullopt, false});
  state.commands.push_back({"unacked-early", "stop", "web/1", true, nlohmann::json{{"ok", true}}, false});
  for (int i = 0; i < 1500; ++i) {
    state.commands.push_back(
        {"settled-" + std::to_string(i), "start", "web/1", true, nlohmann::json{{"ok", true}}, true});
  }
  state.commands.push_back({"open-late", "drain", "web/1", false, std::nullopt, false});
  return state;
}

void expect_pruned(const std::vector<JournalCommand>& commands) {
  ASSERT_EQ(commands.size(), kMaxSettledCommands + 3);
  EXPECT_EQ(commands[0].id, "open-early");
  EXPECT_EQ(commands[1].id, "unacked-early");
  EXPECT_EQ(commands[2].id, "settled-500");
  EXPECT_EQ(commands[kMaxSettledCommands + 1].id, "settled-1499");
  EXPECT_EQ(commands.back().id, "open-late");
}

TEST(JournalTest, SaveKeepsTheNewestSettledCommands) {
  TempDir dir;
  Journal journal(dir.path());
  const auto state = many_commands();
  ASSERT_TRUE(journal.save(state));
  expect_pruned(test::ok(journal.load()).commands);
  EXPECT_EQ(to_json(state)["commands"].size(), state.commands.size());  // to_json itself keeps all
}

TEST(JournalTest, PruneCommandsInMemory) {
  auto state = many_commands();
  prune_commands(state);
  expect_pruned(state.commands);
  prune_commands(state, 0);
  ASSERT_EQ(state.commands.size(), 3u);
  EXPECT_EQ(state.commands[2].id, "open-late");
}

}  // namespace
}  // namespace tranche::agent
