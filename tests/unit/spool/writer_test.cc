// spool/writer on a real ring: what a commit callback promises (the body
// reads back from its extents), the body pieces of a turn gathered into
// records, group commit, abort, restart with state records, segment
// rollover and deletion, and that every receive buffer handed to the
// writer comes back.
#include <gtest/gtest.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <ringrelay/reactor/buffer_pool.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/spool/recovery.hh>
#include <ringrelay/spool/writer.hh>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::spool {
namespace {

namespace fs = std::filesystem;
constexpr unsigned shard = 0;
constexpr std::uint64_t min_segment = 1 << 20;  // the smallest spool.segment_size
constexpr std::uint64_t roomy_segment = 16 << 20;

// Octets a session holds back at a buffer's end (a CR, CRLF, CRLF.) and
// replays in front of the next piece; static, as the writer requires.
constexpr std::string_view no_prefix = "";
constexpr std::string_view cr = "\r";
constexpr std::string_view crlf = "\r\n";
constexpr std::string_view crlf_dot = "\r\n.";

// A temporary spool directory, removed with everything in it.
class temp_spool {
 public:
  temp_spool() {
    // tmpfs when there is one: every commit waits for an fdatasync.
    fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string tmpl = (base / "rr-writer-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    _path = tmpl;
  }
  ~temp_spool() { fs::remove_all(_path); }
  const std::string& path() const { return _path; }

  std::size_t segment_files() const {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(shard_directory(_path, shard)))
      if (parse_segment_name(e.path().filename().string())) ++n;
    return n;
  }

 private:
  std::string _path;
};

// One piece of a body as a session appends it: held-back octets, then the
// octets of one receive buffer (or `slices` consecutive slices of it).
struct piece {
  std::string_view prefix;
  std::string data;
  unsigned slices = 1;
};

struct test_message {
  util::queue_id id = 0;
  envelope env;
  std::vector<piece> pieces;

  std::string body() const {
    std::string out;
    for (const auto& p : pieces) out.append(p.prefix).append(p.data);
    return out;
  }
};

// What the commit callback reported.
struct outcome {
  bool called = false;
  int err = 1;
  std::optional<stored_message> msg;
};

std::string random_octets(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

test_message make_message(util::queue_id id, std::size_t recipients, std::vector<piece> pieces) {
  test_message m;
  m.id = id;
  m.pieces = std::move(pieces);
  envelope& e = m.env;
  e.eight_bit = true;
  e.body_8bitmime = (id & 1) != 0;
  e.received_at = 1'700'000'000 + static_cast<std::int64_t>(id);
  e.wire_size = m.body().size();
  e.size = e.wire_size - e.wire_size / 100;
  e.relays = static_cast<std::uint32_t>(recipients);
  e.day = 19676;
  e.account = "acme";
  e.helo = "client.test";
  e.client_address = "192.0.2.7";
  e.sender = "sender" + std::to_string(id) + "@acme.example";
  for (std::size_t i = 0; i < recipients; ++i)
    e.recipients.push_back("r" + std::to_string(i) + "@example.com");
  e.tls_info = id % 3 ? "" : "TLSv1.3";
  return m;
}

// A message of `size` random octets split into buffer-sized pieces.
test_message sized_message(util::queue_id id, std::size_t size, std::size_t buffer_size) {
  std::string all = random_octets(size, static_cast<std::uint32_t>(id));
  std::vector<piece> pieces;
  for (std::size_t at = 0; at < size; at += buffer_size)
    pieces.push_back({no_prefix, all.substr(at, buffer_size)});
  return make_message(id, 1 + id % 3, std::move(pieces));
}

std::string read_body(const std::string& dir, const stored_message& m) {
  std::string out;
  read_extents(dir, shard, m.body, out);
  return out;
}

// The header of the body record whose payload is `x`, as stored.
record_header header_of(const std::string& dir, const extent& x) {
  std::ifstream f(segment_path(dir, shard, x.segment), std::ios::binary);
  f.seekg(static_cast<std::streamoff>(x.offset - header_size));
  header_bytes raw{};
  f.read(raw.data(), raw.size());
  record_header h;
  EXPECT_EQ(decode_header(raw, h), header_status::ok);
  return h;
}

// Checks the records of a stored body: each a body record of the message,
// within `limit` octets, and only the first flagged body_first.
void expect_records(const std::string& dir, const stored_message& m, std::uint32_t limit) {
  for (std::size_t i = 0; i < m.body.size(); ++i) {
    record_header h = header_of(dir, m.body[i]);
    EXPECT_EQ(h.type, record_type::body) << i;
    EXPECT_EQ(h.id, m.id) << i;
    EXPECT_EQ(h.payload_len, m.body[i].length) << i;
    EXPECT_LE(h.payload_len, limit) << i;
    EXPECT_EQ(h.flags, i == 0 ? body_first : 0) << i;
  }
}

std::vector<std::uint32_t> all_recipients(const envelope& e) {
  std::vector<std::uint32_t> v(e.recipients.size());
  for (std::uint32_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

// A shard's spool writer on its own ring and buffer pool, wired as
// app/shard.cc wires them (ticks drive the writer; pending body records
// are written and buffers published at the end of each turn), with a driver that runs the loop
// until a condition holds at the end of a turn, or a tick budget runs out.
class rig {
 public:
  rig(const std::string& dir, std::uint64_t segment_size, std::uint32_t buffer_count = 64,
      std::uint32_t buffer_size = 4096, std::size_t copy_budget = default_body_copy_budget)
      : loop(reactor::loop_options{4096, 10}),
        buffers(loop.ring(), 0, buffer_count, buffer_size),
        spool(loop, dir, shard, segment_size, copy_budget) {
    loop.on_tick([this](std::int64_t now) {
      spool.tick(now);
      if (++_ticks >= _tick_limit) {
        _out_of_ticks = true;
        loop.stop();
      }
    });
    loop.on_turn_end([this] {
      spool.flush();
      buffers.publish();
      count_queued();
      if (_until && _until()) loop.stop();
    });
  }

  // Runs the loop until `done` holds. False when `max_ticks` ticks passed
  // first: a bug, reported instead of hanging the test.
  [[nodiscard]] bool run_until(std::function<bool()> done, int max_ticks = 2000) {
    _until = std::move(done);
    _ticks = 0;
    _tick_limit = max_ticks;
    _out_of_ticks = false;
    if (!_until()) loop.run();
    _until = nullptr;
    return !_out_of_ticks;
  }
  // Runs `n` loop turns (each ends when a completion or a tick arrives).
  [[nodiscard]] bool run_turns(int n) {
    int turns = 0;
    return run_until([&turns, n] { return turns++ >= n; });
  }
  [[nodiscard]] bool run_until_called(const std::deque<outcome>& outs) {
    return run_until([&outs] {
      return std::all_of(outs.begin(), outs.end(), [](const outcome& o) { return o.called; });
    });
  }

  // Sends one message and runs until its commit is done: what was stored,
  // or nothing (and a test failure) when the commit failed or never ended.
  std::optional<stored_message> store(const test_message& m) {
    std::deque<outcome> outs(1);
    send(m, outs[0]);
    if (!run_until_called(outs)) {
      ADD_FAILURE() << "the commit never completed";
      return std::nullopt;
    }
    EXPECT_EQ(outs[0].err, 0);
    if (outs[0].err != 0) return std::nullopt;
    return std::move(outs[0].msg);
  }

  // Streams a message's body in (as a session does) and commits it.
  void send(const test_message& m, outcome& out) {
    auto h = spool.begin(m.id);
    append(h, m);
    spool.commit(h, m.env, [&out](int err, stored_message* msg) {
      out.called = true;
      out.err = err;
      if (msg) out.msg = *msg;
    });
  }

  // Appends the pieces as a session would: each in a receive buffer the
  // kernel has handed out, referenced by the writer until its write
  // completes; the session drops its own reference right after.
  void append(writer::message_handle h, const test_message& m) {
    for (const auto& p : m.pieces) {
      std::uint16_t id = take_buffer(p.data);
      auto bytes = buffers.data(id, static_cast<std::uint32_t>(p.data.size()));
      std::size_t step = p.data.size() / p.slices, at = 0;
      for (unsigned s = 0; s < p.slices; ++s) {
        std::size_t len = s + 1 == p.slices ? p.data.size() - at : step;
        spool.append_body(h, s == 0 ? std::span<const char>(p.prefix) : std::span<const char>(),
                          bytes.subspan(at, len), buffers, id);
        at += len;
      }
      buffers.unref(id);
    }
  }

  // fdatasyncs the writer queued, counted from the submission queue at
  // the end of each turn: the loop submits at the start of the next turn,
  // so every SQE prepared during a turn is still there (the ring is large
  // enough that `loop::sqe()` never submits early).
  unsigned queued_syncs() const { return _queued_syncs; }
  // writevs the writer queued, counted the same way.
  unsigned queued_writes() const { return _queued_writes; }

  reactor::loop loop;
  reactor::buffer_pool buffers;
  writer spool;

 private:
  // Fills a free buffer as a recv completion would (`taken`, then the
  // bytes). Buffers are reused only once every one of them is back.
  std::uint16_t take_buffer(const std::string& bytes) {
    if (bytes.size() > buffers.size()) throw std::logic_error("piece larger than a buffer");
    if (_next_buffer == buffers.count() && buffers.available() == buffers.count()) _next_buffer = 0;
    if (_next_buffer == buffers.count()) {
      fprintf(stderr, "avail %u of %u\n", (unsigned)buffers.available(), (unsigned)buffers.count());
      throw std::logic_error("test uses too many buffers");
    }
    auto id = static_cast<std::uint16_t>(_next_buffer++);
    buffers.taken(id);
    // The pool hands its memory out read-only; a recv completion writes it.
    auto memory = buffers.data(id, static_cast<std::uint32_t>(bytes.size()));
    std::memcpy(const_cast<char*>(memory.data()), bytes.data(), bytes.size());
    return id;
  }

  void count_queued() {
    const io_uring_sq& sq = loop.ring()->sq;
    for (unsigned i = sq.sqe_head; i != sq.sqe_tail; ++i) {
      const io_uring_sqe& s = sq.sqes[i & sq.ring_mask];
      if (s.opcode == IORING_OP_WRITEV) ++_queued_writes;
      if (s.opcode == IORING_OP_FSYNC && (s.fsync_flags & IORING_FSYNC_DATASYNC)) ++_queued_syncs;
    }
  }

  std::function<bool()> _until;
  int _ticks = 0;
  int _tick_limit = 0;
  bool _out_of_ticks = false;
  std::uint32_t _next_buffer = 0;
  unsigned _queued_syncs = 0;
  unsigned _queued_writes = 0;
};

void expect_stored(const std::string& dir, const test_message& want, const stored_message& got) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.env, want.env);
  std::string body = read_body(dir, got);
  EXPECT_EQ(body.size(), want.body().size()) << "message " << want.id;
  EXPECT_TRUE(body == want.body()) << "message " << want.id << ": body differs";
  std::set<std::uint64_t> live(got.segments.begin(), got.segments.end());
  EXPECT_TRUE(live.count(got.commit_segment)) << "message " << want.id;
  for (const auto& x : got.body)
    EXPECT_TRUE(live.count(x.segment))
        << "message " << want.id << ": an extent's segment is not live";
}

TEST(writer, the_pieces_of_a_turn_become_one_record_that_reads_back) {
  temp_spool dir;
  rig r(dir.path(), roomy_segment);
  EXPECT_TRUE(r.spool.open().empty());
  EXPECT_TRUE(r.spool.writable());
  test_message m = make_message(7, 2,
                                {
                                    {no_prefix, random_octets(4096, 1)},
                                    {crlf, random_octets(1000, 2)},
                                    {crlf_dot, ""},  // only held-back octets
                                    {cr, random_octets(3000, 3)},
                                    {crlf, "last line\r\n"},
                                });
  std::deque<outcome> outs(1);
  r.send(m, outs[0]);
  ASSERT_TRUE(r.run_until_called(outs));

  ASSERT_EQ(outs[0].err, 0);
  ASSERT_TRUE(outs[0].msg);
  const stored_message& s = *outs[0].msg;
  expect_stored(dir.path(), m, s);
  ASSERT_EQ(s.body.size(), 1u) << "the pieces of one turn were not gathered";
  EXPECT_EQ(s.body[0].length, m.body().size());
  expect_records(dir.path(), s, max_body_payload);
  EXPECT_EQ(s.pending, (std::vector<std::uint32_t>{0, 1}));
  EXPECT_EQ(s.attempts, 0u);
  EXPECT_EQ(s.next_attempt, 0);
  EXPECT_GE(r.spool.segment_fd(s.commit_segment), 0);
  EXPECT_EQ(r.buffers.available(), r.buffers.count());
}

TEST(writer, commits_of_one_turn_are_all_acknowledged_with_fewer_fdatasyncs) {
  temp_spool dir;
  rig r(dir.path(), roomy_segment);
  r.spool.open();
  constexpr std::size_t n = 50;
  std::vector<test_message> msgs;
  std::deque<outcome> outs(n);
  for (std::size_t i = 0; i < n; ++i) msgs.push_back(sized_message(100 + i, 500 + 60 * i, 4096));
  for (std::size_t i = 0; i < n; ++i) r.send(msgs[i], outs[i]);  // all in one turn
  ASSERT_TRUE(r.run_until_called(outs));

  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(outs[i].err, 0) << i;
    expect_stored(dir.path(), msgs[i], *outs[i].msg);
  }
  EXPECT_GE(r.queued_syncs(), 1u);
  EXPECT_LT(r.queued_syncs(), n) << "each commit had its own fdatasync: no group commit";
  EXPECT_EQ(r.buffers.available(), r.buffers.count());
}

// The records of one turn lie end to end: one writev carries them all;
// past IOV_MAX slices, more writevs. One fdatasync then covers the turn.
TEST(writer, a_turns_records_go_out_in_one_writev) {
  for (std::size_t n : {std::size_t{40}, std::size_t{400}}) {
    temp_spool dir;
    rig r(dir.path(), roomy_segment, 512);
    r.spool.open();
    ASSERT_TRUE(r.run_turns(1));
    unsigned writes_before = r.queued_writes(), syncs_before = r.queued_syncs();
    std::vector<test_message> msgs;
    std::deque<outcome> outs(n);
    for (std::size_t i = 0; i < n; ++i) msgs.push_back(sized_message(100 + i, 300 + 7 * i, 4096));
    // All in one turn, inside the loop: the rig counts what a turn queued.
    r.loop.defer([&] {
      for (std::size_t i = 0; i < n; ++i) r.send(msgs[i], outs[i]);
    });
    ASSERT_TRUE(r.run_until_called(outs));
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(outs[i].err, 0) << i;
      expect_stored(dir.path(), msgs[i], *outs[i].msg);
    }
    // Each message: a body record (header, its one slice, padding if any)
    // and a commit record (header, payload, padding if any), packed into
    // writevs of at most IOV_MAX slices.
    unsigned want = 1;
    std::size_t slices = 0;
    for (const auto& m : msgs) {
      for (std::size_t payload : {m.body().size(), encode(m.env).size()}) {
        std::size_t mine = 2 + (padding_for(payload) ? 1 : 0);
        if (slices + mine > IOV_MAX) {
          ++want;
          slices = 0;
        }
        slices += mine;
      }
    }
    EXPECT_EQ(r.queued_writes() - writes_before, want) << n << " messages";
    // A sync follows a completed write: at most one per writev.
    EXPECT_GE(r.queued_syncs() - syncs_before, 1u);
    EXPECT_LE(r.queued_syncs() - syncs_before, want);
    EXPECT_EQ(r.buffers.available(), r.buffers.count());
  }
}

TEST(writer, an_aborted_message_is_never_committed_nor_recovered) {
  temp_spool dir;
  test_message aborted = sized_message(1, 10000, 4096);
  test_message kept = sized_message(2, 3000, 4096);
  {
    rig r(dir.path(), roomy_segment);
    r.spool.open();
    auto h = r.spool.begin(aborted.id);
    // Its first pieces are written at the end of a turn, the rest are
    // still pending when it is aborted.
    test_message head = aborted, tail = aborted;
    head.pieces.resize(1);
    tail.pieces.erase(tail.pieces.begin());
    r.append(h, head);
    ASSERT_TRUE(r.run_turns(1));
    r.append(h, tail);
    r.spool.abort(h);
    auto empty = r.spool.begin(3);  // aborted before any body
    r.spool.abort(empty);
    // A later commit is acknowledged only once every earlier write is done.
    std::deque<outcome> outs(1);
    r.send(kept, outs[0]);
    ASSERT_TRUE(r.run_until_called(outs));
    ASSERT_EQ(outs[0].err, 0);
    EXPECT_EQ(r.buffers.available(), r.buffers.count());
    r.spool.close_all();
  }
  // The aborted body records are on disk, without a commit.
  recovery_result rr = recover(dir.path(), shard);
  EXPECT_EQ(rr.discarded, 1u);
  ASSERT_EQ(rr.messages.size(), 1u);
  EXPECT_EQ(rr.messages[0].id, kept.id);

  rig r(dir.path(), roomy_segment);
  auto back = r.spool.open();
  ASSERT_EQ(back.size(), 1u);
  expect_stored(dir.path(), kept, back[0]);
}

// A state record issued in the loop's last turn is never submitted (the
// loop stops before its next submit): close_all writes it, so a delivered
// message does not come back after a clean stop.
TEST(writer, close_all_writes_what_the_last_turn_left_unsubmitted) {
  temp_spool dir;
  test_message m = make_message(21, 2, {{no_prefix, random_octets(1500, 21)}});
  {
    rig r(dir.path(), roomy_segment);
    r.spool.open();
    auto stored = r.store(m);
    ASSERT_TRUE(stored);
    bool stopped = false;
    r.loop.defer([&] {
      r.spool.record_done(*stored, all_recipients(stored->env));
      r.spool.release(*stored);
      stopped = true;
    });
    ASSERT_TRUE(r.run_until([&stopped] { return stopped; }));
    r.spool.close_all();
  }
  rig r(dir.path(), roomy_segment);
  EXPECT_TRUE(r.spool.open().empty()) << "the done record of the last turn was lost";
}

TEST(writer, committed_messages_and_their_state_survive_restarts) {
  temp_spool dir;
  test_message a = make_message(11, 1, {{no_prefix, random_octets(2000, 11)}});
  test_message b = make_message(12, 3, {{no_prefix, "B"}, {crlf, random_octets(4000, 12)}});
  test_message c = make_message(13, 2, {{no_prefix, random_octets(100, 13)}, {crlf_dot, "c"}});
  test_message barrier = make_message(14, 1, {{no_prefix, "barrier\r\n"}});
  {
    rig r(dir.path(), roomy_segment);
    r.spool.open();
    std::deque<outcome> outs(3);
    r.send(a, outs[0]);
    r.send(b, outs[1]);
    r.send(c, outs[2]);
    ASSERT_TRUE(r.run_until_called(outs));
    for (const auto& o : outs) ASSERT_EQ(o.err, 0);
    r.spool.close_all();
  }
  {
    rig r(dir.path(), roomy_segment);
    auto back = r.spool.open();
    ASSERT_EQ(back.size(), 3u);
    expect_stored(dir.path(), a, back[0]);
    expect_stored(dir.path(), b, back[1]);
    expect_stored(dir.path(), c, back[2]);
    for (const auto& m : back) {
      EXPECT_EQ(m.pending, all_recipients(m.env));
      EXPECT_EQ(m.attempts, 0u);
      EXPECT_EQ(m.next_attempt, 0);
    }
    // a is delivered; b's first recipient is, the other two are deferred.
    r.spool.record_done(back[0], back[0].pending);
    r.spool.release(back[0]);
    const std::uint32_t first[] = {0};
    r.spool.record_done(back[1], first);
    back[1].pending = {1, 2};
    back[1].attempts = 2;
    back[1].next_attempt = 1'700'003'600;
    r.spool.record_deferred(back[1]);
    // State records ride on the next sync: a later commit's callback means
    // they are durable.
    std::deque<outcome> outs(1);
    r.send(barrier, outs[0]);
    ASSERT_TRUE(r.run_until_called(outs));
    ASSERT_EQ(outs[0].err, 0);
    r.spool.close_all();
  }
  rig r(dir.path(), roomy_segment);
  auto back = r.spool.open();
  ASSERT_EQ(back.size(), 3u) << "the delivered message came back";
  expect_stored(dir.path(), b, back[0]);
  EXPECT_EQ(back[0].pending, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(back[0].attempts, 2u);
  EXPECT_EQ(back[0].next_attempt, 1'700'003'600);
  expect_stored(dir.path(), c, back[1]);
  EXPECT_EQ(back[1].pending, all_recipients(c.env));
  EXPECT_EQ(back[1].attempts, 0u);
  expect_stored(dir.path(), barrier, back[2]);
}

TEST(writer, bodies_span_segments_and_released_segments_are_deleted) {
  temp_spool dir;
  constexpr std::uint32_t buffer_size = 64 << 10;
  constexpr std::size_t n = 40;  // about 4 MiB in 1 MiB segments
  std::vector<test_message> msgs;
  for (std::size_t i = 0; i < n; ++i)
    msgs.push_back(sized_message(200 + i, 100'000 + 37 * i, buffer_size));
  {
    rig r(dir.path(), min_segment, 128, buffer_size);
    r.spool.open();
    // Concurrent sessions: the bodies interleave in the log.
    std::vector<writer::message_handle> handles;
    for (const auto& m : msgs) handles.push_back(r.spool.begin(m.id));
    for (std::size_t p = 0; p < 2; ++p)
      for (std::size_t i = 0; i < n; ++i) {
        test_message one = msgs[i];
        one.pieces = {msgs[i].pieces[p]};
        r.append(handles[i], one);
      }
    std::deque<outcome> outs(n);
    for (std::size_t i = 0; i < n; ++i)
      r.spool.commit(handles[i], msgs[i].env, [&o = outs[i]](int err, stored_message* m) {
        o.called = true;
        o.err = err;
        if (m) o.msg = *m;
      });
    ASSERT_TRUE(r.run_until_called(outs));
    std::set<std::uint64_t> used;
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(outs[i].err, 0) << i;
      expect_stored(dir.path(), msgs[i], *outs[i].msg);
      for (const auto& x : outs[i].msg->body) used.insert(x.segment);
    }
    EXPECT_GE(used.size(), 4u) << "the bodies did not span segments";
    EXPECT_EQ(r.buffers.available(), r.buffers.count());
    r.spool.close_all();
  }
  {
    rig r(dir.path(), min_segment);
    auto back = r.spool.open();
    ASSERT_EQ(back.size(), n);
    std::map<util::queue_id, const test_message*> by_id;
    for (const auto& m : msgs) by_id[m.id] = &m;
    for (const auto& m : back) {
      ASSERT_TRUE(by_id.count(m.id));
      expect_stored(dir.path(), *by_id[m.id], m);
    }
    EXPECT_GE(dir.segment_files(), 5u);
    for (const auto& m : back) {
      r.spool.record_done(m, m.pending);
      r.spool.release(m);
    }
    // Only the segment in use stays.
    ASSERT_TRUE(r.run_until([&dir] { return dir.segment_files() == 1; }))
        << dir.segment_files() << " segment files left";
    r.spool.close_all();
  }
  rig r(dir.path(), min_segment);
  EXPECT_TRUE(r.spool.open().empty());
}

TEST(writer, segments_of_messages_released_while_running_are_deleted) {
  temp_spool dir;
  constexpr std::uint32_t buffer_size = 64 << 10;
  constexpr std::size_t n = 30;
  rig r(dir.path(), min_segment, 128, buffer_size);
  r.spool.open();
  std::vector<test_message> msgs;
  for (std::size_t i = 0; i < n; ++i)
    msgs.push_back(sized_message(300 + i, 90'000 + i, buffer_size));
  std::deque<outcome> outs(n);
  std::size_t next = 0;
  // Delivery finishes each message as soon as it is acknowledged, while
  // the next ones are still being written.
  std::function<void()> send_next = [&] {
    // Several commits may complete in one turn, each deferring a send.
    if (next >= n) return;
    std::size_t i = next++;
    auto h = r.spool.begin(msgs[i].id);
    r.append(h, msgs[i]);
    r.spool.commit(h, msgs[i].env, [&, i](int err, stored_message* m) {
      outs[i].called = true;
      outs[i].err = err;
      if (!m) return;
      EXPECT_TRUE(read_body(dir.path(), *m) == msgs[i].body()) << i;
      r.spool.record_done(*m, m->pending);
      r.spool.release(*m);
      if (next < n) r.loop.defer(send_next);
    });
  };
  for (int k = 0; k < 4; ++k) send_next();  // four sessions at a time
  ASSERT_TRUE(r.run_until_called(outs));
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(outs[i].err, 0) << i;
  // The segment in use stays, and perhaps the one prepared after it.
  ASSERT_TRUE(r.run_until([&dir] { return dir.segment_files() <= 2; }))
      << dir.segment_files() << " segment files left";
  r.spool.close_all();
}

// A done record is written to the segment in use; the next record rolls
// over to a fresh segment; then the message is released. The old segment
// must stay until a sync covers the done record (else a crash could bring
// the delivered message back), and then go; later commits never fail.
TEST(writer, a_segment_goes_only_once_the_records_that_freed_it_are_synced) {
  temp_spool dir;
  constexpr std::uint32_t buffer_size = 64 << 10;
  rig r(dir.path(), min_segment, 64, buffer_size);
  r.spool.open();
  // 15 records of 64 KiB: past half the segment (the next one is
  // prepared), with less than one more record of room left.
  test_message first = sized_message(41, 15 * buffer_size, buffer_size);
  std::deque<outcome> outs(1);
  r.send(first, outs[0]);
  ASSERT_TRUE(r.run_until_called(outs));
  ASSERT_EQ(outs[0].err, 0);
  const stored_message s = *outs[0].msg;
  const std::uint64_t old_segment = s.commit_segment;
  const std::string prepared = segment_path(dir.path(), shard, old_segment + 1);
  int turns = 0;
  ASSERT_TRUE(r.run_until([&] {
    // The prepared segment is allocated; a few turns more for its
    // directory sync.
    std::error_code ec;
    if (fs::file_size(prepared, ec) != min_segment) return false;
    return ++turns > 20;
  }));

  r.spool.record_done(s, s.pending);
  test_message second = sized_message(42, buffer_size, buffer_size);
  std::deque<outcome> later(1);
  r.send(second, later[0]);
  r.spool.release(s);
  EXPECT_NE(r.spool.segment_fd(old_segment), -1)
      << "deleted before the done record that freed it was on disk";
  ASSERT_TRUE(r.run_until_called(later));
  EXPECT_EQ(later[0].err, 0) << strerror(-later[0].err);
  ASSERT_TRUE(later[0].msg);
  expect_stored(dir.path(), second, *later[0].msg);
  EXPECT_EQ(later[0].msg->commit_segment, old_segment + 1);
  ASSERT_TRUE(r.run_until([&] { return r.spool.segment_fd(old_segment) == -1; }))
      << "the dead segment was never deleted";
}

TEST(writer, every_buffer_handed_to_append_body_comes_back) {
  temp_spool dir;
  rig r(dir.path(), roomy_segment);
  r.spool.open();
  const std::uint32_t all = r.buffers.available();
  ASSERT_EQ(all, r.buffers.count());

  // Ten buffers, each appended in three slices (three references each).
  test_message sliced = make_message(21, 1, {});
  for (std::uint32_t i = 0; i < 10; ++i)
    sliced.pieces.push_back({i ? crlf : no_prefix, random_octets(3000 + i, 21 + i), 3});
  sliced.env.wire_size = sliced.body().size();
  test_message aborted = sized_message(22, 5 * 4096, 4096);

  std::deque<outcome> outs(1);
  r.send(sliced, outs[0]);
  auto h = r.spool.begin(aborted.id);
  r.append(h, aborted);
  r.spool.abort(h);
  EXPECT_EQ(r.buffers.available(), all - 15) << "the writer holds its buffers until the writes end";

  ASSERT_TRUE(r.run_until_called(outs));
  ASSERT_EQ(outs[0].err, 0);
  EXPECT_EQ(outs[0].msg->body.size(), 1u);
  expect_stored(dir.path(), sliced, *outs[0].msg);
  EXPECT_EQ(r.buffers.available(), all);
}

// Records are capped at max_body_payload octets: a longer run of pieces
// splits, in the middle of a piece when it must, each record carrying its
// own reference to a buffer it shares with the next.
TEST(writer, a_body_longer_than_a_record_splits_into_full_records) {
  temp_spool dir;
  constexpr std::uint32_t buffer_size = 64 << 10;
  rig r(dir.path(), roomy_segment, 128, buffer_size);
  r.spool.open();
  test_message m = make_message(31, 1, {});
  for (std::uint32_t i = 0; i < 40; ++i)  // 40 x 65,002 octets: 2.48 MiB
    m.pieces.push_back({i ? crlf : no_prefix, random_octets(65'000 + (i ? 0 : 2), 31 + i)});
  m.env.wire_size = m.body().size();
  const auto stored = r.store(m);
  ASSERT_TRUE(stored);
  const stored_message& s = *stored;
  expect_stored(dir.path(), m, s);
  ASSERT_EQ(s.body.size(), 3u);
  EXPECT_EQ(s.body[0].length, max_body_payload);
  EXPECT_EQ(s.body[1].length, max_body_payload);
  EXPECT_EQ(s.body[2].length, m.body().size() - 2 * max_body_payload);
  expect_records(dir.path(), s, max_body_payload);
  EXPECT_EQ(r.buffers.available(), r.buffers.count());
}

// The writev of a record has a bounded number of slices.
TEST(writer, a_record_holds_at_most_max_record_pieces_slices) {
  temp_spool dir;
  rig r(dir.path(), roomy_segment, 512, 4096);
  r.spool.open();
  test_message m = make_message(32, 1, {});
  for (std::uint32_t i = 0; i < 300; ++i) m.pieces.push_back({no_prefix, random_octets(1000, i)});
  m.env.wire_size = m.body().size();
  const auto stored = r.store(m);
  ASSERT_TRUE(stored);
  const stored_message& s = *stored;
  expect_stored(dir.path(), m, s);
  ASSERT_EQ(s.body.size(), 2u);
  EXPECT_EQ(s.body[0].length, max_record_pieces * 1000);
  EXPECT_EQ(s.body[1].length, (300 - max_record_pieces) * 1000);
  expect_records(dir.path(), s, max_body_payload);
  EXPECT_EQ(r.buffers.available(), r.buffers.count());
}

// With small segments a record takes at most a sixteenth of one, so
// records pack segments without large holes.
TEST(writer, records_are_smaller_in_small_segments) {
  temp_spool dir;
  rig r(dir.path(), min_segment, 64, 4096);
  r.spool.open();
  test_message m = sized_message(33, 50 * 4096 + 17, 4096);
  const auto stored = r.store(m);
  ASSERT_TRUE(stored);
  expect_stored(dir.path(), m, *stored);
  EXPECT_EQ(stored->body.size(), 4u);
  expect_records(dir.path(), *stored, min_segment / 16);
}

// Small bodies stay in memory for delivery, held-back octets included, up
// to body_copy_limit octets a message and the copy budget a shard; every
// octet is given back by release, drop_body_copy or an abort.
TEST(writer, small_bodies_are_kept_in_memory_within_the_limit_and_the_budget) {
  temp_spool dir;
  rig r(dir.path(), roomy_segment, 4096);  // no buffer is taken twice
  r.spool.open();
  test_message small = make_message(
      61, 1, {{no_prefix, random_octets(3000, 61)}, {crlf_dot, ""}, {cr, random_octets(1000, 62)}});
  auto kept = r.store(small);
  ASSERT_TRUE(kept);
  ASSERT_TRUE(kept->body_copy);
  EXPECT_TRUE(*kept->body_copy == small.body());
  EXPECT_EQ(r.spool.body_copy_octets(), small.body().size());
  r.spool.release(*kept);
  EXPECT_EQ(r.spool.body_copy_octets(), 0u);

  auto at_limit = r.store(sized_message(62, body_copy_limit, 4096));
  ASSERT_TRUE(at_limit);
  EXPECT_TRUE(at_limit->body_copy) << "a body of exactly body_copy_limit octets is kept";
  r.spool.drop_body_copy(*at_limit);
  EXPECT_FALSE(at_limit->body_copy);
  EXPECT_EQ(r.spool.body_copy_octets(), 0u);

  auto over = r.store(sized_message(63, body_copy_limit + 1, 4096));
  ASSERT_TRUE(over);
  EXPECT_FALSE(over->body_copy) << "one octet over the limit is read from the log";
  EXPECT_EQ(r.spool.body_copy_octets(), 0u);

  auto h = r.spool.begin(64);
  r.append(h, small);
  EXPECT_EQ(r.spool.body_copy_octets(), small.body().size());
  r.spool.abort(h);
  EXPECT_EQ(r.spool.body_copy_octets(), 0u);
  r.buffers.publish();

  // Full-size copies until the budget is spent: the next body goes without.
  std::vector<stored_message> held;
  constexpr std::size_t fit = default_body_copy_budget / body_copy_limit;
  for (std::size_t i = 0; i <= fit; ++i) {
    auto m = r.store(sized_message(100 + i, body_copy_limit, 4096));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->body_copy.has_value(), i < fit) << i;
    held.push_back(std::move(*m));
  }
  EXPECT_EQ(r.spool.body_copy_octets(), default_body_copy_budget);
  for (const auto& m : held) r.spool.release(m);
  EXPECT_EQ(r.spool.body_copy_octets(), 0u);
  EXPECT_EQ(r.buffers.available(), r.buffers.count());
}

// io.body_copy_budget sets the shard's budget: three full copies fit in
// three limits' worth and the fourth body goes without; a budget of 0 keeps
// no copy at all. A copy given back makes room for the next.
TEST(writer, the_copy_budget_is_the_configured_one) {
  temp_spool dir;
  rig r(dir.path(), roomy_segment, 4096, 4096, 3 * body_copy_limit);
  r.spool.open();
  std::vector<stored_message> held;
  for (std::size_t i = 0; i < 4; ++i) {
    auto m = r.store(sized_message(200 + i, body_copy_limit, 4096));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->body_copy.has_value(), i < 3) << i;
    held.push_back(std::move(*m));
  }
  EXPECT_EQ(r.spool.body_copy_octets(), 3 * body_copy_limit);
  r.spool.release(held.front());
  auto again = r.store(sized_message(210, body_copy_limit, 4096));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->body_copy) << "the released copy's room is used again";

  temp_spool none_dir;
  rig none(none_dir.path(), roomy_segment, 4096, 4096, 0);
  none.spool.open();
  auto tiny = none.store(sized_message(220, 10, 4096));
  ASSERT_TRUE(tiny);
  EXPECT_FALSE(tiny->body_copy) << "budget 0 keeps nothing";
  EXPECT_EQ(none.spool.body_copy_octets(), 0u);
}

// Pieces wait for the end of their turn, no longer: each turn's pieces
// become one record per message, even with bodies interleaved, and the
// buffers come back once those writes complete, before any commit.
TEST(writer, each_turn_writes_one_record_per_message_and_returns_its_buffers) {
  temp_spool dir;
  rig r(dir.path(), roomy_segment);
  r.spool.open();
  test_message a = sized_message(41, 9 * 4096, 4096);
  test_message b = sized_message(42, 9 * 4096 - 5, 4096);
  auto ha = r.spool.begin(a.id), hb = r.spool.begin(b.id);
  for (std::size_t turn = 0; turn < 3; ++turn) {
    for (std::size_t i = 3 * turn; i < 3 * turn + 3; ++i) {
      test_message one = a;
      one.pieces = {a.pieces[i]};
      r.append(ha, one);
      one.pieces = {b.pieces[i]};
      r.append(hb, one);
    }
    r.buffers.publish();
    EXPECT_EQ(r.buffers.available(), r.buffers.count() - 6) << "turn " << turn;
    ASSERT_TRUE(r.run_until([&r] { return r.buffers.available() == r.buffers.count(); }))
        << "the pieces of turn " << turn << " were never written";
  }
  std::deque<outcome> outs(2);
  auto record = [](outcome& o) {
    return [&o](int err, stored_message* m) {
      o.called = true;
      o.err = err;
      if (m) o.msg = *m;
    };
  };
  r.spool.commit(ha, a.env, record(outs[0]));
  r.spool.commit(hb, b.env, record(outs[1]));
  ASSERT_TRUE(r.run_until_called(outs));
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(outs[i].err, 0);
    expect_stored(dir.path(), i ? b : a, *outs[i].msg);
    EXPECT_EQ(outs[i].msg->body.size(), 3u) << "one record per turn";
    expect_records(dir.path(), *outs[i].msg, max_body_payload);
  }
}

// A commit writes the pieces still pending in front of its commit record;
// an abort drops them unwritten and gives their buffers back at once.
TEST(writer, commit_writes_and_abort_drops_the_pending_pieces) {
  temp_spool dir;
  test_message kept = sized_message(51, 5 * 4096 + 100, 4096);
  test_message dropped = sized_message(52, 6 * 4096, 4096);
  {
    rig r(dir.path(), roomy_segment);
    r.spool.open();
    auto hd = r.spool.begin(dropped.id);
    r.append(hd, dropped);
    std::deque<outcome> outs(1);
    r.send(kept, outs[0]);  // the commit comes before the end of the turn
    r.spool.abort(hd);
    r.buffers.publish();
    EXPECT_EQ(r.buffers.available(), r.buffers.count() - 6) << "only the committed pieces are held";
    ASSERT_TRUE(r.run_until_called(outs));
    ASSERT_EQ(outs[0].err, 0);
    expect_stored(dir.path(), kept, *outs[0].msg);
    EXPECT_EQ(outs[0].msg->body.size(), 1u);
    EXPECT_EQ(r.buffers.available(), r.buffers.count());
    r.spool.close_all();
  }
  recovery_result rr = recover(dir.path(), shard);
  EXPECT_EQ(rr.discarded, 0u) << "the aborted message's pieces were written";
  ASSERT_EQ(rr.messages.size(), 1u);
  EXPECT_EQ(rr.messages[0].id, kept.id);
}

// Charged commits (accounts/usage_ledger.hh): each acknowledged commit
// carries its record's sequence, ascending in acknowledgement order; a
// segment holding a charged commit outlives its messages until a usage
// snapshot covers the charge, and a restart reports exactly the charges
// above the snapshot's sequence, keeping their segments.
test_message charged_message(util::queue_id id, std::size_t size, std::size_t buffer_size) {
  test_message m = sized_message(id, size, buffer_size);
  m.env.quota_relays = static_cast<std::uint32_t>(id % 5);
  m.env.block_relays = static_cast<std::uint32_t>(1 + id % 2);
  return m;
}

TEST(writer, segments_with_charged_commits_wait_for_the_usage_snapshot) {
  temp_spool dir;
  constexpr std::uint32_t buffer_size = 64 << 10;
  constexpr std::size_t n = 30;
  rig r(dir.path(), min_segment, 128, buffer_size);
  r.spool.open();
  std::deque<outcome> outs(n);
  std::vector<test_message> msgs;
  for (std::size_t i = 0; i < n; ++i) {
    msgs.push_back(charged_message(500 + i, 90'000 + i, buffer_size));
    r.send(msgs[i], outs[i]);
  }
  ASSERT_TRUE(r.run_until_called(outs));
  std::uint64_t last = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(outs[i].err, 0) << i;
    EXPECT_GT(outs[i].msg->commit_sequence, last) << i;
    last = outs[i].msg->commit_sequence;
    r.spool.record_done(*outs[i].msg, outs[i].msg->pending);
    r.spool.release(*outs[i].msg);
  }
  const std::size_t written = dir.segment_files();
  ASSERT_GT(written, 2u);
  int turns = 0;
  ASSERT_TRUE(r.run_until([&] { return ++turns > 50; }));
  EXPECT_EQ(dir.segment_files(), written) << "a segment went before its charges were saved";
  r.spool.charges_saved(outs[n / 2].msg->commit_sequence);
  ASSERT_TRUE(r.run_until([&] { return ++turns > 100; }));
  EXPECT_LT(dir.segment_files(), written) << "segments covered by the snapshot stayed";
  EXPECT_GT(dir.segment_files(), 2u) << "segments with unsaved charges went";
  r.spool.charges_saved(last);
  ASSERT_TRUE(r.run_until([&dir] { return dir.segment_files() <= 2; }))
      << dir.segment_files() << " segment files left";
  r.spool.close_all();
}

TEST(writer, a_restart_reports_the_charges_above_the_snapshot_and_keeps_them) {
  temp_spool dir;
  constexpr std::uint32_t buffer_size = 64 << 10;
  constexpr std::size_t n = 12;
  std::vector<test_message> msgs;
  std::vector<std::uint64_t> sequences;
  {
    rig r(dir.path(), min_segment, 128, buffer_size);
    r.spool.open();
    std::deque<outcome> outs(n);
    for (std::size_t i = 0; i < n; ++i) {
      msgs.push_back(charged_message(600 + i, 200'000, buffer_size));
      r.send(msgs[i], outs[i]);
    }
    // An uncharged message between them: never reported.
    test_message free = sized_message(700, 1000, buffer_size);
    std::deque<outcome> free_out(1);
    r.send(free, free_out[0]);
    ASSERT_TRUE(r.run_until_called(outs));
    ASSERT_TRUE(r.run_until_called(free_out));
    for (auto& o : outs) {
      ASSERT_EQ(o.err, 0);
      sequences.push_back(o.msg->commit_sequence);
      // Delivered: nothing is live any more, only the charges hold segments.
      r.spool.record_done(*o.msg, o.msg->pending);
      r.spool.release(*o.msg);
    }
    ASSERT_EQ(free_out[0].err, 0);
    r.spool.record_done(*free_out[0].msg, free_out[0].msg->pending);
    r.spool.release(*free_out[0].msg);
    int turns = 0;
    ASSERT_TRUE(r.run_until([&] { return ++turns > 20; }));
    r.spool.close_all();
  }
  const std::size_t files = dir.segment_files();
  ASSERT_GT(files, 2u);
  for (std::size_t after : {std::size_t{0}, n / 3, n - 1}) {
    rig r(dir.path(), min_segment, 128, buffer_size);
    std::vector<charge> charges;
    std::uint64_t threshold = after == 0 ? 0 : sequences[after - 1];
    r.spool.open(threshold, &charges);
    ASSERT_EQ(charges.size(), n - after) << "above sequence " << threshold;
    for (std::size_t i = 0; i < charges.size(); ++i) {
      const auto& want = msgs[after + i].env;
      EXPECT_EQ(charges[i].sequence, sequences[after + i]);
      EXPECT_EQ(charges[i].account, want.account);
      EXPECT_EQ(charges[i].day, want.day);
      EXPECT_EQ(charges[i].quota_relays, want.quota_relays);
      EXPECT_EQ(charges[i].block_relays, want.block_relays);
    }
    r.spool.close_all();
  }
  // Once a snapshot covers every charge, recovery lets the dead segments go.
  rig r(dir.path(), min_segment, 128, buffer_size);
  std::vector<charge> charges;
  r.spool.open(sequences.back(), &charges);
  EXPECT_TRUE(charges.empty());
  EXPECT_LE(dir.segment_files(), 2u);
  r.spool.close_all();
}

}  // namespace
}  // namespace ringrelay::spool
