// bench_store_commit: how long a durable commit of the SQLite store takes
// (WAL, synchronous=FULL, a real file) against the same batch on an
// in-memory store, so the cost of making a write durable shows as a ratio
// measured in the same run (quality.md). Also times ApplicationService::apply
// of a changed manifest, the whole path of `tranche apply` below the HTTP
// layer.
//
// The loops are plain std::chrono timings of single calls: every commit is
// timed on its own and reported as median and p99 in microseconds (wall
// time). The file and in-memory variants run interleaved, round by round,
// so that background load on a noisy machine hits both alike.
//
//   bench_store_commit [--iterations N] [--warmup N] [--dir DIR]
//
// Prints a table, then one JSON line {"bench":"store_commit", ...}.

#include <sys/vfs.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "engine/access.h"
#include "engine/application_service.h"
#include "model/manifest.h"
#include "lib/machine.h"
#include "store/store.h"

namespace tranche::bench {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

struct Options {
  int iterations = 500;
  int warmup = 20;
  fs::path dir = fs::temp_directory_path();
};

// Thrown rather than exiting, so the temporary directory is removed.
[[noreturn]] void die(const std::string& message) { throw std::runtime_error(message); }

Options parse_args(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        die(std::string(arg) + " needs a value");
      }
      return argv[++i];
    };
    if (arg == "--iterations") {
      options.iterations = std::stoi(value());
    } else if (arg == "--warmup") {
      options.warmup = std::stoi(value());
    } else if (arg == "--dir") {
      options.dir = value();
    } else if (arg == "-h" || arg == "--help") {
      std::printf("usage: bench_store_commit [--iterations N (500)] [--warmup N (20)] [--dir DIR ($TMPDIR)]\n");
      std::exit(0);
    } else {
      die("unknown argument " + std::string(arg) + " (try --help)");
    }
  }
  if (options.iterations < 10 || options.warmup < 0) {
    die("--iterations must be >= 10 and --warmup >= 0");
  }
  return options;
}

// A fresh directory for the store files, removed on every way out of main.
class TempDir {
 public:
  explicit TempDir(const fs::path& base) {
    std::string templ = (base / "tranche-bench-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      die("cannot create a temporary directory under " + base.string());
    }
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string load_average() {
  std::ifstream file("/proc/loadavg");
  std::string one, five, fifteen;
  file >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// The file system the store file lives on: fsync on tmpfs costs nothing, so
// the figure means little there.
std::string filesystem_type(const fs::path& path) {
  struct statfs info {};
  if (::statfs(path.c_str(), &info) != 0) {
    return "unknown";
  }
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0xEF53UL:
      return "ext4";
    case 0x01021994UL:
      return "tmpfs";
    case 0x58465342UL:
      return "xfs";
    case 0x9123683EUL:
      return "btrfs";
    case 0x794C7630UL:
      return "overlayfs";
    case 0x2FC12FC1UL:
      return "zfs";
    default: {
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(info.f_type));
      return hex;
    }
  }
}

struct Stats {
  double median_us = 0;
  double p99_us = 0;
  double max_us = 0;
};

// Nearest-rank percentiles of per-call times.
Stats summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto rank = [&](double p) {
    const auto index = static_cast<size_t>(std::ceil(p * static_cast<double>(us.size()))) - 1;
    return us[std::min(index, us.size() - 1)];
  };
  return Stats{rank(0.50), rank(0.99), us.back()};
}

double round1(double value) { return std::round(value * 10.0) / 10.0; }
double round2(double value) { return std::round(value * 100.0) / 100.0; }

std::unique_ptr<Store> open_store(const std::string& path) {
  auto opened = open_sqlite_store(SqliteStoreOptions{path});
  if (!opened) {
    die("open " + path + ": " + opened.error().describe());
  }
  return std::move(*opened);
}

void commit_or_die(Store& store, const WriteBatch& batch, const char* what) {
  if (auto done = store.commit(batch); !done) {
    die(std::string(what) + ": commit failed: " + done.error().describe());
  }
}

// (a) A typical operator command: one operational value, its event, its
// audit record.
WriteBatch operator_command(int i, TimePoint now) {
  const std::string from = i % 2 == 0 ? "off" : "restart";
  const std::string to = i % 2 == 0 ? "restart" : "off";
  WriteBatch batch;
  OperationalValueRecord value;
  value.app = "shop";
  value.path = "web";
  value.setting = Setting::kMaintenance;
  value.value = to;
  value.set_by = "bench";
  value.set_at = now;
  batch.mutations.push_back(PutOperationalValue{value});
  EventRecord event;
  event.time = now;
  event.app = "shop";
  event.path = "web";
  event.type = "OperationalStateChanged";
  event.from_json = "{\"maintenance\":\"" + from + "\"}";
  event.to_json = "{\"maintenance\":\"" + to + "\"}";
  event.message = "maintenance " + from + " -> " + to + " by bench";
  batch.mutations.push_back(AppendEvent{event});
  batch.mutations.push_back(AppendAudit{AuditRecord{0, now, "bench", "PUT /api/v1/applications/shop/operational-state",
                                                    "shop/web", "{\"maintenance\":\"" + to + "\"}"}});
  return batch;
}

// (b) A member state change: the member record and its event.
WriteBatch member_change(int i, TimePoint now) {
  const int ordinal = i % 4;
  const std::string from = i % 2 == 0 ? "Running" : "Updating";
  const std::string to = i % 2 == 0 ? "Updating" : "Running";
  MemberRecord member;
  member.id = "web/" + std::to_string(ordinal);
  member.app = "shop";
  member.cluster = "web";
  member.ordinal = ordinal;
  member.host = "host-" + std::to_string(ordinal % 2);
  member.state = to;
  member.revision = 1;
  member.version = "1.0.0";
  member.pid = 10000 + i;
  member.ports = {{"http", 31000 + ordinal}};
  member.created_at = now;
  member.updated_at = now;
  WriteBatch batch;
  batch.mutations.push_back(PutMember{member});
  EventRecord event;
  event.time = now;
  event.app = "shop";
  event.path = "web";
  event.member = member.id;
  event.type = "MemberStateChanged";
  event.from_json = "\"" + from + "\"";
  event.to_json = "\"" + to + "\"";
  event.message = member.id + ": " + from + " -> " + to;
  batch.mutations.push_back(AppendEvent{event});
  return batch;
}

// The application every batch refers to, so the stores look like a real one.
void seed(Store& store, TimePoint now) {
  ApplicationRecord app;
  app.name = "shop";
  app.current_revision = 1;
  app.created_at = now;
  app.updated_at = now;
  WriteBatch batch;
  batch.preconditions.push_back(ExpectApplicationVersion{"shop", 0});
  batch.mutations.push_back(PutApplication{app});
  commit_or_die(store, batch, "seed");
}

// (d) The manifest of the apply case; each call gets a new web version, so
// each apply stores a new revision.
std::string manifest(int version) {
  return R"(application: shop
description: bench shop
groups:
  - name: backend
    clusters:
      - name: db
        members: {min: 1, max: 1, desired: 1}
        artifact: {version: "15.4", command: ["tranche-hello", "--port", "${PORT_MAIN}"]}
        ports: [main]
clusters:
  - name: web
    dependsOn: [backend]
    members: {min: 2, max: 10, desired: 4}
    artifact: {version: "1.0.)" +
         std::to_string(version) + R"(", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health:
      http: {port: http, path: /healthz}
)";
}

double time_us(const std::function<void()>& call) {
  const auto start = Steady::now();
  call();
  const auto end = Steady::now();
  return std::chrono::duration<double, std::micro>(end - start).count();
}

struct Row {
  std::string name;
  std::string store;
  Stats stats;
  std::string ratio;  // against its baseline, "" for a baseline
};

}  // namespace

int run(int argc, char** argv) {
  const Options options = parse_args(argc, argv);
  const TempDir dir(options.dir);
  const std::string fs_type = filesystem_type(dir.path());
  const std::string load_before = load_average();
  SystemClock clock;

  // Commits: (a) and (b) on a file store, the same batches on ":memory:".
  auto file_store = open_store((dir.path() / "commit.db").string());
  auto memory_store = open_store(":memory:");
  seed(*file_store, clock.now());
  seed(*memory_store, clock.now());

  std::vector<double> file_op, memory_op, file_member, memory_member;
  const int rounds = options.warmup + options.iterations;
  for (int i = 0; i < rounds; ++i) {
    const bool measured = i >= options.warmup;
    const TimePoint now = clock.now();
    const WriteBatch op = operator_command(i, now);
    const WriteBatch member = member_change(i, now);
    const double a = time_us([&] { commit_or_die(*file_store, op, "operator command (file)"); });
    const double c = time_us([&] { commit_or_die(*memory_store, op, "operator command (memory)"); });
    const double b = time_us([&] { commit_or_die(*file_store, member, "member change (file)"); });
    const double bm = time_us([&] { commit_or_die(*memory_store, member, "member change (memory)"); });
    if (measured) {
      file_op.push_back(a);
      memory_op.push_back(c);
      file_member.push_back(b);
      memory_member.push_back(bm);
    }
  }

  // (d) apply of a changed manifest, file store and in-memory store
  // interleaved the same way.
  auto apply_file_store = open_store((dir.path() / "apply.db").string());
  auto apply_memory_store = open_store(":memory:");
  ApplicationService file_service(*apply_file_store, clock);
  ApplicationService memory_service(*apply_memory_store, clock);
  const Caller caller{"bench", "POST /api/v1/applications"};
  auto apply_or_die = [&](ApplicationService& service, int version, const char* what) {
    auto outcome = service.apply(manifest(version), ManifestFormat::kYaml, false, caller);
    if (!outcome) {
      die(std::string(what) + ": apply failed: " + outcome.error().describe());
    }
    if (!outcome->changed) {
      die(std::string(what) + ": apply of version " + std::to_string(version) + " changed nothing");
    }
  };
  apply_or_die(file_service, 0, "apply (file)");
  apply_or_die(memory_service, 0, "apply (memory)");
  std::vector<double> file_apply, memory_apply;
  for (int i = 1; i <= rounds; ++i) {
    const double f = time_us([&] { apply_or_die(file_service, i, "apply (file)"); });
    const double m = time_us([&] { apply_or_die(memory_service, i, "apply (memory)"); });
    if (i > options.warmup) {
      file_apply.push_back(f);
      memory_apply.push_back(m);
    }
  }
  const std::string load_after = load_average();

  const Stats s_file_op = summarize(file_op);
  const Stats s_memory_op = summarize(memory_op);
  const Stats s_file_member = summarize(file_member);
  const Stats s_memory_member = summarize(memory_member);
  const Stats s_file_apply = summarize(file_apply);
  const Stats s_memory_apply = summarize(memory_apply);
  const double fsync_ratio = s_file_op.median_us / s_memory_op.median_us;
  const double member_ratio = s_file_member.median_us / s_memory_member.median_us;
  const double apply_ratio = s_file_apply.median_us / s_memory_apply.median_us;

  auto ratio_text = [](double r) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1fx", r);
    return std::string(text);
  };
  const std::vector<Row> rows = {
      {"(a) operator command: value+event+audit", "file", s_file_op, ratio_text(fsync_ratio)},
      {"(c) operator command: value+event+audit", ":memory:", s_memory_op, ""},
      {"(b) member change: member+event", "file", s_file_member, ratio_text(member_ratio)},
      {"    member change: member+event", ":memory:", s_memory_member, ""},
      {"(d) ApplicationService::apply (new rev)", "file", s_file_apply, ratio_text(apply_ratio)},
      {"    ApplicationService::apply (new rev)", ":memory:", s_memory_apply, ""},
  };

  std::printf("store_commit: %d timed calls per case after %d warm-up, wall time per call\n", options.iterations,
              options.warmup);
  std::printf("machine: %s; build: %s; store dir: %s (%s); loadavg %s -> %s\n", machine().c_str(), build_type().c_str(),
              dir.path().c_str(), fs_type.c_str(), load_before.c_str(), load_after.c_str());
  std::printf("\n%-42s %-9s %11s %11s %11s %12s\n", "case", "store", "median us", "p99 us", "max us", "vs :memory:");
  for (const Row& row : rows) {
    std::printf("%-42s %-9s %11.1f %11.1f %11.1f %12s\n", row.name.c_str(), row.store.c_str(), row.stats.median_us,
                row.stats.p99_us, row.stats.max_us, row.ratio.empty() ? "baseline" : row.ratio.c_str());
  }
  std::printf("\n");

  nlohmann::ordered_json line;
  line["bench"] = "store_commit";
  line["machine"] = machine();
  line["build"] = build_type();
  line["file_commit_us_median"] = round1(s_file_op.median_us);
  line["memory_commit_us_median"] = round1(s_memory_op.median_us);
  line["fsync_ratio"] = round2(fsync_ratio);
  line["apply_us_median"] = round1(s_file_apply.median_us);
  line["file_commit_us_p99"] = round1(s_file_op.p99_us);
  line["memory_commit_us_p99"] = round1(s_memory_op.p99_us);
  line["member_file_commit_us_median"] = round1(s_file_member.median_us);
  line["member_file_commit_us_p99"] = round1(s_file_member.p99_us);
  line["member_memory_commit_us_median"] = round1(s_memory_member.median_us);
  line["member_fsync_ratio"] = round2(member_ratio);
  line["apply_us_p99"] = round1(s_file_apply.p99_us);
  line["apply_memory_us_median"] = round1(s_memory_apply.median_us);
  line["apply_fsync_ratio"] = round2(apply_ratio);
  line["iterations"] = options.iterations;
  line["filesystem"] = fs_type;
  line["loadavg_before"] = load_before;
  line["loadavg_after"] = load_after;
  std::printf("%s\n", line.dump().c_str());
  return 0;
}

}  // namespace tranche::bench

int main(int argc, char** argv) {
  try {
    return tranche::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_store_commit: %s\n", e.what());
    return 1;
  }
}
