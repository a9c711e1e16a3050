#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <ringrelay/log/log.hh>
#include <ringrelay/spool/envelope.hh>
#include <ringrelay/spool/record.hh>
#include <ringrelay/spool/recovery.hh>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace ringrelay::spool {
namespace {

namespace fs = std::filesystem;
constexpr unsigned shard = 2;

// A temporary spool directory, removed with everything in it.
class temp_spool {
 public:
  temp_spool() {
    // tmpfs when there is one: the tests recover thousands of logs, and
    // every recovery syncs what it cuts and deletes.
    fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string tmpl = (base / "rr-spool-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    _path = tmpl;
  }
  ~temp_spool() { fs::remove_all(_path); }
  const std::string& path() const { return _path; }
  std::string shard_dir() const { return shard_directory(_path, shard); }

 private:
  std::string _path;
};

// Builds a log in memory with the record encoder, remembering where each
// record went, so tests can damage it anywhere and say what must survive.
class log_builder {
 public:
  struct record {
    std::size_t segment;  // index into segments
    std::uint64_t offset;
    record_type type;
    util::queue_id id;
    std::string payload;
    std::uint64_t end() const { return offset + record_size(payload.size()); }
    std::uint64_t padding_start() const { return offset + header_size + payload.size(); }
  };
  struct segment {
    std::uint64_t seq;
    std::string bytes;
  };

  void new_segment(std::uint64_t seq) { segments.push_back({seq, {}}); }

  std::size_t add(record_type t, util::queue_id id, std::string payload, std::uint8_t flags = 0) {
    return add_with_sequence(t, id, std::move(payload), flags, next_sequence++);
  }

  std::size_t add_with_sequence(record_type t, util::queue_id id, std::string payload,
                                std::uint8_t flags, std::uint64_t sequence) {
    auto& seg = segments.back();
    records.push_back({segments.size() - 1, seg.bytes.size(), t, id, payload});
    append_record(seg.bytes, {t, flags, 0, 0, id, sequence}, payload);
    return records.size() - 1;
  }

  std::size_t body(util::queue_id id, std::string data, bool first = false) {
    return add(record_type::body, id, std::move(data), first ? body_first : 0);
  }
  std::size_t commit(util::queue_id id, const envelope& e) {
    return add(record_type::commit, id, encode(e));
  }
  std::size_t done(util::queue_id id, std::vector<std::uint32_t> list) {
    std::string p;
    encode_done(list, p);
    return add(record_type::done, id, p);
  }
  std::size_t deferred(util::queue_id id, const deferred_state& d) {
    std::string p;
    encode_deferred(d, p);
    return add(record_type::deferred, id, p);
  }
  std::size_t failed(util::queue_id id, const failure& f) {
    std::string p;
    encode_failed(f, p);
    return add(record_type::failed, id, p);
  }

  // Writes every segment as a preallocated file would look: the records,
  // then `zero_tail` zero octets. `mutate` may change a segment's bytes.
  void write(const temp_spool& spool, std::size_t zero_tail = 64,
             const std::function<void(std::size_t, std::string&)>& mutate = {}) const {
    fs::remove_all(spool.shard_dir());
    fs::create_directories(spool.shard_dir());
    for (std::size_t i = 0; i < segments.size(); ++i) {
      std::string bytes = segments[i].bytes + std::string(zero_tail, '\0');
      if (mutate) mutate(i, bytes);
      std::ofstream(spool.shard_dir() + "/" + segment_name(segments[i].seq), std::ios::binary)
          << bytes;
    }
  }

  std::vector<segment> segments;
  std::vector<record> records;
  std::uint64_t next_sequence = 1;
};

envelope make_envelope(std::size_t recipients, const std::string& body) {
  envelope e;
  e.received_at = 1'800'000'000;
  e.size = e.wire_size = body.size();
  e.relays = static_cast<std::uint32_t>(recipients);
  e.day = 20833;
  e.account = "acme";
  e.helo = "mx.acme.example";
  e.client_address = "[192.0.2.7]";
  e.sender = "sender@acme.example";
  for (std::size_t i = 0; i < recipients; ++i) {
    e.recipients.push_back("r" + std::to_string(i) + "@example.com");
  }
  return e;
}

// What recovery must return, computed naively from which records survive:
// a message counts when its commit survives; its body is complete when all
// its body records survive; its pending recipients follow from the state
// records that survive (recovery.hh).
struct expected_message {
  util::queue_id id;
  envelope env;
  std::vector<extent> body;
  std::vector<std::uint32_t> pending;
  std::int64_t next_attempt = 0;
  std::uint32_t attempts = 0;
};

struct expectation {
  std::vector<expected_message> pending;
  std::set<util::queue_id> incomplete;
};

expectation model(const log_builder& log, const std::function<bool(std::size_t)>& survives) {
  expectation out;
  std::set<util::queue_id> seen;
  for (std::size_t c = 0; c < log.records.size(); ++c) {
    const auto& rec = log.records[c];
    if (rec.type != record_type::commit || !survives(c) || !seen.insert(rec.id).second) continue;
    expected_message m{rec.id, {}, {}, {}, 0, 0};
    EXPECT_TRUE(decode(std::span<const char>(rec.payload.data(), rec.payload.size()), m.env));
    bool complete = true, all_finished = false;
    std::set<std::uint32_t> pending;
    for (std::uint32_t i = 0; i < m.env.recipients.size(); ++i) pending.insert(i);
    for (std::size_t i = 0; i < log.records.size(); ++i) {
      const auto& r = log.records[i];
      if (r.id != rec.id) continue;
      std::span<const char> p(r.payload.data(), r.payload.size());
      if (r.type == record_type::body) {
        complete = complete && survives(i);
        m.body.push_back({log.segments[r.segment].seq, r.offset + header_size,
                          static_cast<std::uint32_t>(r.payload.size())});
      }
      if (!survives(i)) continue;
      std::vector<std::uint32_t> list;
      failure f;
      deferred_state d;
      if (r.type == record_type::done && decode_done(p, list)) {
        all_finished = all_finished || list.empty();
        for (auto x : list) pending.erase(x);
      } else if (r.type == record_type::failed && decode_failed(p, f)) {
        all_finished = all_finished || f.recipients.empty();
        for (auto x : f.recipients) pending.erase(x);
      } else if (r.type == record_type::deferred && decode_deferred(p, d)) {
        std::erase_if(pending, [&](std::uint32_t x) {
          return std::find(d.pending.begin(), d.pending.end(), x) == d.pending.end();
        });
        m.next_attempt = d.next_attempt;
        m.attempts = d.attempts;
      }
    }
    if (all_finished || pending.empty()) continue;
    m.pending.assign(pending.begin(), pending.end());
    if (complete) {
      out.pending.push_back(std::move(m));
    } else {
      out.incomplete.insert(m.id);
    }
  }
  return out;
}

// Where damage at `pos` of segment `seg` makes recovery cut that segment,
// and what it must then say. Records wholly before the cut survive, as do
// all records of other segments.
struct cut {
  std::uint64_t keep;  // the segment's size after recovery
  bool damage;         // reported as torn tail or loss
};

cut cut_for_truncation(const log_builder& log, std::size_t seg, std::uint64_t pos) {
  std::uint64_t keep = 0;
  bool boundary = pos == 0;
  for (const auto& r : log.records) {
    if (r.segment != seg) continue;
    if (r.end() <= pos) keep = r.end();
    boundary = boundary || r.end() == pos;
  }
  return {keep, pos < log.segments[seg].bytes.size() && !boundary};
}

cut cut_for_flip(const log_builder& log, std::size_t seg, std::uint64_t pos) {
  auto data_end = log.segments[seg].bytes.size();
  for (const auto& r : log.records) {
    if (r.segment != seg || pos < r.offset || pos >= r.end()) continue;
    // Padding is not covered by the CRC: a flip there changes nothing.
    if (pos >= r.padding_start()) return {data_end, false};
    return {r.offset, true};
  }
  // In the zero-filled tail: damage only when it lands in the next header.
  return {data_end, pos < data_end + header_size};
}

class recovery : public ::testing::Test {
 protected:
  // Recovery logs every cut it makes; the tests read results, not lines.
  void SetUp() override { log::set_buffered(true); }
  void TearDown() override {
    log::pending().clear();
    log::set_buffered(false);
  }

  recovery_result run() {
    auto r = recover(spool.path(), shard);
    log::pending().clear();
    return r;
  }

  std::uint64_t file_size(std::uint64_t seq) const {
    return fs::file_size(spool.shard_dir() + "/" + segment_name(seq));
  }
  bool exists(std::uint64_t seq) const {
    return fs::exists(spool.shard_dir() + "/" + segment_name(seq));
  }

  // The result matches the expectation exactly, bodies included.
  void check(const recovery_result& r, const expectation& want, const std::string& where) {
    ASSERT_EQ(r.messages.size(), want.pending.size()) << where;
    for (std::size_t i = 0; i < want.pending.size(); ++i) {
      const auto& got = r.messages[i];
      const auto& exp = want.pending[i];
      EXPECT_EQ(got.id, exp.id) << where;
      EXPECT_EQ(got.env, exp.env) << where;
      EXPECT_EQ(got.body, exp.body) << where;
      EXPECT_EQ(got.pending, exp.pending) << where;
      EXPECT_EQ(got.next_attempt, exp.next_attempt) << where;
      EXPECT_EQ(got.attempts, exp.attempts) << where;
      std::string body;
      read_extents(spool.path(), shard, got.body, body);
      EXPECT_EQ(body.size(), got.env.wire_size) << where;
      EXPECT_EQ(body, bodies[got.id]) << where;
    }
    std::set<util::queue_id> incomplete;
    for (const auto& m : r.incomplete) incomplete.insert(m.id);
    EXPECT_EQ(incomplete, want.incomplete) << where;
  }

  // For every octet of every segment: truncate the file there, or flip it.
  // Recovery must cut exactly at the damaged record, report it, return
  // what the surviving records say, delete only what it reports deleted,
  // and leave a log that a second recovery finds clean and unchanged.
  void damage_everywhere(const log_builder& log, bool flip) {
    constexpr std::size_t tail = 40;
    for (std::size_t seg = 0; seg < log.segments.size(); ++seg) {
      auto file_len = log.segments[seg].bytes.size() + tail;
      for (std::uint64_t pos = 0; pos < file_len + (flip ? 0 : 1); ++pos) {
        log.write(spool, tail, [&](std::size_t i, std::string& bytes) {
          if (i != seg) return;
          if (flip) {
            bytes[pos] = static_cast<char>(bytes[pos] ^ 0xff);
          } else {
            bytes.resize(pos);
          }
        });
        auto c = flip ? cut_for_flip(log, seg, pos) : cut_for_truncation(log, seg, pos);
        auto where = std::string(flip ? "flip" : "truncate") + " segment " + std::to_string(seg) +
                     " at " + std::to_string(pos);
        auto want = model(log, [&](std::size_t i) {
          const auto& r = log.records[i];
          return r.segment != seg || r.end() <= c.keep;
        });
        check_one(log, seg, c, want, where);
        if (HasFailure()) return;
      }
    }
  }

  void check_one(const log_builder& log, std::size_t seg, const cut& c, const expectation& want,
                 const std::string& where) {
    auto r = run();
    check(r, want, where);
    bool newest = seg + 1 == log.segments.size();
    EXPECT_EQ(r.torn_tail.has_value(), newest && c.damage) << where;
    EXPECT_EQ(r.lost.size(), !newest && c.damage ? 1u : 0u) << where;
    if (c.damage) {
      const auto& d = newest ? *r.torn_tail : r.lost.at(0);
      EXPECT_EQ(d.segment, log.segments[seg].seq) << where;
      EXPECT_EQ(d.offset, c.keep) << where;
    }
    if (exists(log.segments[seg].seq)) {
      EXPECT_EQ(file_size(log.segments[seg].seq), c.keep) << where;
    }
    for (const auto& s : log.segments) {
      bool reported = std::any_of(r.segments.begin(), r.segments.end(),
                                  [&](const segment_info& i) { return i.seq == s.seq; });
      EXPECT_EQ(exists(s.seq), reported) << where << " segment " << s.seq;
    }
    auto again = run();
    check(again, want, where + " (again)");
    EXPECT_FALSE(again.torn_tail) << where;
    EXPECT_TRUE(again.lost.empty()) << where;
    EXPECT_EQ(again.deleted_segments, 0u) << where;
  }

  temp_spool spool;
  std::map<util::queue_id, std::string> bodies;  // what each message's body is
};

// Adds a message's body in chunks and remembers the whole for checks.
void add_body(log_builder& log, std::map<util::queue_id, std::string>& bodies, util::queue_id id,
              const std::string& chunk, bool first) {
  log.body(id, chunk, first);
  bodies[id] += chunk;
}

constexpr util::queue_id A = 0xA, B = 0xB, C = 0xC, D = 0xD, E = 0xE, F = 0xF, G = 0x10;

// Five messages interleaved in one segment: A committed and deferred, B
// never committed, C partly done then deferred, D done, E partly failed.
log_builder single_segment_log(std::map<util::queue_id, std::string>& bodies) {
  log_builder log;
  log.new_segment(1);
  add_body(log, bodies, A, "Subject: A\r\n\r\n", true);
  add_body(log, bodies, B, "Subject: B\r\n", true);
  add_body(log, bodies, A, "first line of A's body\r\n", false);
  add_body(log, bodies, C, "Subj:", true);
  log.commit(A, make_envelope(2, bodies[A]));
  add_body(log, bodies, B, "abc", false);
  add_body(log, bodies, C, " C\r\n\r\nexactly 16\r\n", false);
  add_body(log, bodies, C, "", false);
  add_body(log, bodies, D, "D: body\r\n", true);
  log.commit(C, make_envelope(2, bodies[C]));
  log.done(C, {0});
  log.commit(D, make_envelope(1, bodies[D]));
  log.deferred(C, {1'800'000'600, 1, {1}});
  log.done(D, {});
  add_body(log, bodies, E, "Subject: E\r\n\r\nthirty octets of text\r\n", true);
  log.commit(E, make_envelope(3, bodies[E]));
  log.failed(E, {"550 5.1.1 no such user", {0, 2}});
  log.deferred(A, {1'800'001'200, 2, {0, 1}});
  return log;
}

TEST_F(recovery, rebuilds_the_pending_set_of_an_interleaved_log) {
  auto log = single_segment_log(bodies);
  log.write(spool, 4096);
  auto r = run();
  auto want = model(log, [](std::size_t) { return true; });
  ASSERT_EQ(want.pending.size(), 3u);  // A, C, E; B uncommitted, D done
  EXPECT_EQ(want.pending[0].id, A);
  EXPECT_EQ(want.pending[0].pending, (std::vector<std::uint32_t>{0, 1}));
  EXPECT_EQ(want.pending[0].attempts, 2u);
  EXPECT_EQ(want.pending[1].id, C);
  EXPECT_EQ(want.pending[1].pending, std::vector<std::uint32_t>{1});
  EXPECT_EQ(want.pending[2].id, E);
  EXPECT_EQ(want.pending[2].pending, std::vector<std::uint32_t>{1});
  check(r, want, "intact");
  EXPECT_EQ(r.discarded, 1u);
  EXPECT_FALSE(r.torn_tail);
  EXPECT_TRUE(r.lost.empty());
  EXPECT_EQ(r.next_sequence, log.next_sequence);
  EXPECT_EQ(r.next_segment, 2u);
  // The unwritten, zero-filled tail goes; the records stay.
  EXPECT_EQ(file_size(1), log.segments[0].bytes.size());
  ASSERT_EQ(r.segments.size(), 1u);
  EXPECT_EQ(r.segments[0].size, log.segments[0].bytes.size());
  EXPECT_EQ(r.segments[0].live, (std::vector<util::queue_id>{A, C, E}));
}

TEST_F(recovery, any_truncation_of_a_single_segment_keeps_exactly_the_whole_records) {
  damage_everywhere(single_segment_log(bodies), false);
}

TEST_F(recovery, any_flipped_octet_of_a_single_segment_cuts_at_its_record) {
  damage_everywhere(single_segment_log(bodies), true);
}

// Four segments: G finished alone in 6; A's body spans 7 and 8 and A is
// deferred in 9; D and F finish in later segments than their commits; E
// is committed in the newest.
log_builder multi_segment_log(std::map<util::queue_id, std::string>& bodies) {
  log_builder log;
  log.new_segment(6);
  add_body(log, bodies, G, "G\r\n", true);
  log.commit(G, make_envelope(1, bodies[G]));
  log.done(G, {});
  log.new_segment(7);
  add_body(log, bodies, A, "Subject: spanning\r\n\r\n", true);
  add_body(log, bodies, D, "D\r\n", true);
  log.commit(D, make_envelope(1, bodies[D]));
  add_body(log, bodies, A, "second chunk\r\n", false);
  log.new_segment(8);
  add_body(log, bodies, A, "third chunk, in the next segment\r\n", false);
  log.commit(A, make_envelope(2, bodies[A]));
  log.done(D, {});
  add_body(log, bodies, F, "F body\r\n", true);
  log.commit(F, make_envelope(1, bodies[F]));
  log.new_segment(9);
  log.done(F, {0});
  log.deferred(A, {1'800'000'060, 1, {0, 1}});
  add_body(log, bodies, E, "E\r\n", true);
  log.commit(E, make_envelope(1, bodies[E]));
  return log;
}

TEST_F(recovery, a_body_spans_segments_and_a_dead_old_segment_is_deleted) {
  auto log = multi_segment_log(bodies);
  log.write(spool);
  auto r = run();
  check(r, model(log, [](std::size_t) { return true; }), "intact");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].id, A);
  std::set<std::uint64_t> body_segments;
  for (const auto& e : r.messages[0].body) body_segments.insert(e.segment);
  EXPECT_EQ(body_segments, (std::set<std::uint64_t>{7, 8}));
  EXPECT_EQ(r.messages[0].commit_segment, 8u);
  EXPECT_EQ(r.messages[0].segments, (std::vector<std::uint64_t>{7, 8, 9}));
  EXPECT_EQ(r.deleted_segments, 1u);
  EXPECT_FALSE(exists(6));
  ASSERT_EQ(r.segments.size(), 3u);
  EXPECT_EQ(r.segments[0].live, std::vector<util::queue_id>{A});
  EXPECT_EQ(r.segments[1].live, std::vector<util::queue_id>{A});
  EXPECT_EQ(r.segments[2].live, (std::vector<util::queue_id>{A, E}));
  EXPECT_EQ(r.next_segment, 10u);
  EXPECT_EQ(r.next_sequence, log.next_sequence);
}

TEST_F(recovery, any_truncation_of_any_segment_of_a_multi_segment_log) {
  damage_everywhere(multi_segment_log(bodies), false);
}

TEST_F(recovery, any_flipped_octet_of_any_segment_of_a_multi_segment_log) {
  damage_everywhere(multi_segment_log(bodies), true);
}

TEST_F(recovery, random_corruption_never_yields_a_body_that_does_not_add_up) {
  auto log = multi_segment_log(bodies);
  std::mt19937 rng(5321);
  for (int round = 0; round < 300; ++round) {
    log.write(spool, 64, [&](std::size_t, std::string& bytes) {
      for (int i = static_cast<int>(rng() % 4); i > 0; --i) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
      if (rng() % 3 == 0) bytes.resize(rng() % (bytes.size() + 1));
    });
    auto where = "round " + std::to_string(round);
    auto r = run();
    for (const auto& m : r.messages) {
      std::string body;
      read_extents(spool.path(), shard, m.body, body);
      EXPECT_EQ(body, bodies[m.id]) << where;
      EXPECT_FALSE(m.pending.empty()) << where;
    }
    auto again = run();
    EXPECT_EQ(again.messages.size(), r.messages.size()) << where;
    EXPECT_FALSE(again.torn_tail) << where;
    if (HasFailure()) return;
  }
}

TEST_F(recovery, deletes_segments_where_nothing_lives_except_what_finished_messages_need) {
  struct {
    const char* name;
    bool a_finishes;  // A, live in segment 1, finishes in segment 3
    std::vector<std::uint64_t> kept;
  } cases[] = {
      // C's commit stays in segment 1 (A lives there), so C's done record
      // in segment 2 must stay too, or C would be delivered again.
      {"commit kept, so its done record is kept", false, {1, 2, 3}},
      {"nothing live: both go, the newest stays", true, {3}},
  };
  for (const auto& c : cases) {
    bodies.clear();
    log_builder log;
    log.new_segment(1);
    add_body(log, bodies, A, "A\r\n", true);
    log.commit(A, make_envelope(1, bodies[A]));
    add_body(log, bodies, C, "C\r\n", true);
    log.commit(C, make_envelope(1, bodies[C]));
    log.new_segment(2);
    log.done(C, {});
    log.new_segment(3);
    if (c.a_finishes) log.done(A, {});
    log.write(spool);
    auto r = run();
    std::vector<std::uint64_t> kept;
    for (const auto& s : r.segments) kept.push_back(s.seq);
    EXPECT_EQ(kept, c.kept) << c.name;
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      EXPECT_EQ(exists(seq), std::count(kept.begin(), kept.end(), seq) == 1) << c.name << seq;
    }
    EXPECT_EQ(r.deleted_segments, 3 - kept.size()) << c.name;
    EXPECT_EQ(r.messages.size(), c.a_finishes ? 0u : 1u) << c.name;
    auto again = run();
    EXPECT_EQ(again.messages.size(), r.messages.size()) << c.name;
    EXPECT_EQ(again.deleted_segments, 0u) << c.name;
  }
}

TEST_F(recovery, a_message_copied_forward_frees_its_old_segment_once_restated) {
  struct {
    const char* name;
    bool restated;  // the copy's deferred record was written
    std::vector<std::uint64_t> live;
  } cases[] = {
      {"restated: the old segment goes", true, {2}},
      // Without it, the old done record still says recipient 0 is done.
      {"crash before restating: the old segment stays", false, {1, 2}},
  };
  for (const auto& c : cases) {
    bodies.clear();
    log_builder log;
    log.new_segment(1);
    add_body(log, bodies, A, "Subject: copied\r\n\r\nbody\r\n", true);
    log.commit(A, make_envelope(3, bodies[A]));
    log.done(A, {0});
    log.new_segment(2);
    log.body(A, bodies[A], true);
    log.commit(A, make_envelope(3, bodies[A]));
    if (c.restated) log.deferred(A, {1'800'000'300, 4, {1, 2}});
    log.new_segment(3);
    log.write(spool);
    auto r = run();
    ASSERT_EQ(r.messages.size(), 1u) << c.name;
    const auto& m = r.messages[0];
    EXPECT_EQ(m.pending, (std::vector<std::uint32_t>{1, 2})) << c.name;
    EXPECT_EQ(m.commit_segment, 2u) << c.name;
    ASSERT_EQ(m.body.size(), 1u) << c.name;
    EXPECT_EQ(m.body[0].segment, 2u) << c.name;
    EXPECT_EQ(m.segments, c.live) << c.name;
    EXPECT_EQ(exists(1), !c.restated) << c.name;
    auto again = run();
    ASSERT_EQ(again.messages.size(), 1u) << c.name;
    EXPECT_EQ(again.messages[0].pending, m.pending) << c.name;
    EXPECT_EQ(again.messages[0].attempts, c.restated ? 4u : 0u) << c.name;
  }
}

TEST_F(recovery, an_abandoned_copy_is_never_mixed_into_the_body) {
  log_builder log;
  log.new_segment(1);
  log.body(A, "hello ", true);
  log.body(A, "world", false);
  log.commit(A, make_envelope(1, "hello world"));
  log.new_segment(2);
  log.body(A, "hello ", true);  // a copy cut short by a crash
  log.body(A, "hello ", true);
  log.body(A, "world", false);
  log.commit(A, make_envelope(1, "hello world"));
  log.deferred(A, {0, 1, {0}});
  log.write(spool);
  auto r = run();
  ASSERT_EQ(r.messages.size(), 1u);
  std::string body;
  read_extents(spool.path(), shard, r.messages[0].body, body);
  EXPECT_EQ(body, "hello world");
  EXPECT_EQ(r.messages[0].body.size(), 2u);
  EXPECT_EQ(r.messages[0].body[0].segment, 2u);
  EXPECT_EQ(r.deleted_segments, 1u);
}

TEST_F(recovery, records_with_stale_sequence_numbers_end_the_segment) {
  struct {
    const char* name;
    bool in_next_segment;
  } cases[] = {{"same segment", false}, {"next segment", true}};
  for (const auto& c : cases) {
    log_builder log;
    log.new_segment(1);
    log.body(A, "A", true);
    log.commit(A, make_envelope(1, "A"));
    if (c.in_next_segment) log.new_segment(2);
    auto stale = log.records.size();
    log.add_with_sequence(record_type::body, B, "B", body_first, 2);
    log.add_with_sequence(record_type::commit, B, encode(make_envelope(1, "B")), 0, 50);
    log.write(spool);
    auto r = run();
    ASSERT_EQ(r.messages.size(), 1u) << c.name;
    EXPECT_EQ(r.messages[0].id, A) << c.name;
    ASSERT_TRUE(r.torn_tail) << c.name;
    EXPECT_EQ(r.torn_tail->offset, log.records[stale].offset) << c.name;
    EXPECT_NE(r.torn_tail->reason.find("sequence"), std::string::npos) << c.name;
    EXPECT_EQ(r.next_sequence, 3u) << c.name;
  }
}

TEST_F(recovery, intact_records_it_cannot_use_are_skipped_not_cut) {
  log_builder log;
  log.new_segment(1);
  log.body(A, "A", true);
  log.commit(A, make_envelope(2, "A"));
  log.add(static_cast<record_type>(9), A, "from a newer ringrelay");
  log.add(record_type::done, A, "xyz");  // not a list of u32
  log.add(record_type::commit, B, "not an envelope");
  log.add(record_type::deferred, A, "short");
  log.add(record_type::failed, A, "\xff\xff\xff\xff");
  log.body(E, "E", true);
  log.commit(E, make_envelope(1, "E"));
  log.write(spool);
  auto r = run();
  EXPECT_EQ(r.skipped_records, 5u);
  EXPECT_FALSE(r.torn_tail);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].id, A);
  EXPECT_EQ(r.messages[0].pending, (std::vector<std::uint32_t>{0, 1}));
  EXPECT_EQ(r.messages[1].id, E);
}

TEST_F(recovery, a_missing_shard_directory_is_created_empty) {
  auto r = run();
  EXPECT_TRUE(fs::is_directory(spool.shard_dir()));
  EXPECT_TRUE(r.messages.empty());
  EXPECT_TRUE(r.segments.empty());
  EXPECT_EQ(r.next_sequence, 1u);
  EXPECT_EQ(r.next_segment, 1u);
}

TEST_F(recovery, other_files_are_left_alone_and_an_empty_newest_segment_is_kept) {
  fs::create_directories(spool.shard_dir());
  for (const char* name : {"notes.txt", "0000000001.seg.tmp", "12.seg"}) {
    std::ofstream(spool.shard_dir() + "/" + name) << "not a segment";
  }
  std::ofstream(spool.shard_dir() + "/" + segment_name(5));
  auto r = run();
  ASSERT_EQ(r.segments.size(), 1u);
  EXPECT_EQ(r.segments[0].seq, 5u);
  EXPECT_EQ(r.segments[0].size, 0u);
  EXPECT_FALSE(r.torn_tail);
  EXPECT_EQ(r.next_segment, 6u);
  for (const char* name : {"notes.txt", "0000000001.seg.tmp", "12.seg"}) {
    EXPECT_TRUE(fs::exists(spool.shard_dir() + "/" + name)) << name;
  }
}

TEST_F(recovery, an_unusable_directory_throws_naming_the_path) {
  struct {
    const char* name;
    std::function<std::string(const temp_spool&)> make;
  } cases[] = {
      {"spool directory missing", [](const temp_spool& s) { return s.path() + "/absent"; }},
      {"shard path is a file",
       [](const temp_spool& s) {
         std::ofstream(s.shard_dir()) << "x";
         return s.path();
       }},
  };
  for (const auto& c : cases) {
    auto dir = c.make(spool);
    try {
      recover(dir, shard);
      ADD_FAILURE() << c.name << ": no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(shard_directory(dir, shard)), std::string::npos)
          << c.name << ": " << e.what();
    }
  }
}

TEST_F(recovery, read_extents_throws_for_a_missing_segment) {
  std::vector<extent> extents{{99, 0, 1}};
  std::string out;
  EXPECT_THROW(read_extents(spool.path(), shard, extents, out), std::runtime_error);
}

}  // namespace
}  // namespace ringrelay::spool
