#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <ringrelay/log/log.hh>
#include <ringrelay/spool/record.hh>
#include <ringrelay/spool/recovery.hh>
#include <stdexcept>

namespace ringrelay::spool {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(err));
}

class file {
 public:
  file() = default;
  file(const std::string& path, int flags) { open(path, flags); }
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  ~file() {
    if (_fd >= 0) ::close(_fd);
  }
  void open(const std::string& path, int flags) {
    if (_fd >= 0) ::close(_fd);
    _fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (_fd < 0) fail("cannot open spool file", path, errno);
  }
  int fd() const { return _fd; }

 private:
  int _fd = -1;
};

// Reads exactly `n` octets at `off`; a short read means the file changed
// under us or the disk failed, and both stop the startup.
void read_exactly(int fd, char* out, std::size_t n, std::uint64_t off, const std::string& path) {
  while (n > 0) {
    auto got = ::pread(fd, out, n, static_cast<off_t>(off));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("cannot read spool file", path, errno);
    if (got == 0) fail("unexpected end of spool file", path, EIO);
    out += got;
    n -= static_cast<std::size_t>(got);
    off += static_cast<std::uint64_t>(got);
  }
}

// Reads a segment through a window, so that the many small records cost no
// system call each; the window grows for a record larger than it.
class segment_reader {
 public:
  static constexpr std::size_t window = 1u << 20;

  segment_reader(int fd, std::uint64_t size, const std::string& path, std::vector<char>& buffer)
      : _fd(fd), _size(size), _path(path), _buf(buffer) {}

  // Precondition: off + n <= the file size.
  std::span<const char> view(std::uint64_t off, std::size_t n) {
    if (n == 0) return {};
    if (off < _start || off + n > _start + _len) {
      auto want = static_cast<std::size_t>(
          std::min<std::uint64_t>(std::max<std::uint64_t>(n, window), _size - off));
      if (_buf.size() < want) _buf.resize(want);
      read_exactly(_fd, _buf.data(), want, off, _path);
      _start = off;
      _len = want;
    }
    return {_buf.data() + (off - _start), n};
  }

 private:
  int _fd;
  std::uint64_t _size;
  const std::string& _path;
  std::vector<char>& _buf;
  std::uint64_t _start = 0;
  std::size_t _len = 0;
};

// Appends `seg` to an ascending list of segments unless it is already last:
// records arrive in log order, so this keeps the list sorted and unique.
void note_segment(std::vector<std::uint64_t>& list, std::uint64_t seg) {
  if (list.empty() || list.back() != seg) list.push_back(seg);
}

std::vector<std::uint64_t> sorted_union(std::vector<std::uint64_t> a,
                                        const std::vector<std::uint64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  a.erase(std::unique(a.begin(), a.end()), a.end());
  return a;
}

// What the log says about one queue ID. The recipient state is kept as
// order-independent set operations (recovery.hh), so a record whose commit
// is elsewhere in the log, or gone, still counts.
struct message_state {
  std::vector<extent> gathering;  // body records since the last body_first or commit
  bool has_body_records = false;
  bool committed = false;
  std::uint64_t commit_order = 0;  // sequence of the first commit seen
  envelope env;
  std::vector<extent> body;
  bool body_complete = false;
  std::uint64_t body_commit_segment = 0;
  bool all_finished = false;
  std::vector<std::uint32_t> removed;                 // done or failed
  std::optional<std::vector<std::uint32_t>> allowed;  // every deferred list, intersected
  std::int64_t next_attempt = 0;
  std::uint32_t attempts = 0;
  // Where its records lie, ascending: commits, all state records, and state
  // records from the last deferred record on (all of them before one).
  std::vector<std::uint64_t> commit_segments;
  std::vector<std::uint64_t> state_segments;
  std::vector<std::uint64_t> state_segments_since_deferred;

  std::vector<std::uint32_t> pending() const;
  std::vector<std::uint64_t> live_segments() const;
};

std::vector<std::uint32_t> message_state::pending() const {
  std::vector<std::uint32_t> out;
  if (all_finished) return out;
  auto gone = removed;
  std::sort(gone.begin(), gone.end());
  auto n = static_cast<std::uint32_t>(env.recipients.size());
  for (std::uint32_t i = 0; i < n; ++i) {
    if (allowed && !std::binary_search(allowed->begin(), allowed->end(), i)) continue;
    if (std::binary_search(gone.begin(), gone.end(), i)) continue;
    out.push_back(i);
  }
  return out;
}

// The segments whose records this pending message needs (recovery.hh): an
// older copy of its body or commit, and state records that its last deferred
// record restates, are not among them.
std::vector<std::uint64_t> message_state::live_segments() const {
  std::vector<std::uint64_t> out{body_commit_segment};
  for (const auto& e : body) out.push_back(e.segment);
  return sorted_union(std::move(out), state_segments_since_deferred);
}

class log_index {
 public:
  explicit log_index(std::uint64_t charges_after) : _charges_after(charges_after) {}
  void add(std::uint64_t seg, std::uint64_t off, const record_header& h,
           std::span<const char> payload);
  std::map<util::queue_id, message_state>& messages() { return _messages; }
  std::size_t skipped() const { return _skipped; }
  std::vector<charge>& charges() { return _charges; }
  // Sequence of the last charged commit above the threshold in `seg`.
  std::uint64_t last_charge(std::uint64_t seg) const {
    auto it = _last_charge.find(seg);
    return it == _last_charge.end() ? 0 : it->second;
  }

 private:
  void skip(const record_header& h, const char* why);
  void add_commit(message_state& m, std::uint64_t seg, const record_header& h,
                  std::span<const char> payload);
  void add_state(message_state& m, std::uint64_t seg, const record_header& h,
                 std::span<const char> payload);

  std::map<util::queue_id, message_state> _messages;
  std::size_t _skipped = 0;
  std::uint64_t _charges_after;
  std::vector<charge> _charges;
  std::map<std::uint64_t, std::uint64_t> _last_charge;  // segment -> sequence
};

void log_index::skip(const record_header& h, const char* why) {
  ++_skipped;
  RR_WARN("spool_record_skipped id=%s sequence=%llu type=%u reason=\"%s\"",
          util::format_queue_id(h.id).c_str(), static_cast<unsigned long long>(h.sequence),
          static_cast<unsigned>(h.type), why);
}

void log_index::add(std::uint64_t seg, std::uint64_t off, const record_header& h,
                    std::span<const char> payload) {
  switch (h.type) {
    case record_type::body: {
      auto& m = _messages[h.id];
      m.has_body_records = true;
      if (h.flags & body_first) m.gathering.clear();
      m.gathering.push_back({seg, off + header_size, h.payload_len});
      return;
    }
    case record_type::commit:
      add_commit(_messages[h.id], seg, h, payload);
      return;
    case record_type::done:
    case record_type::deferred:
    case record_type::failed:
      add_state(_messages[h.id], seg, h, payload);
      return;
  }
  // Intact, yet of a type this version does not know: written by a newer
  // ringrelay. Its length is trusted (the CRC matched), so the scan goes on.
  skip(h, "unknown record type");
}

void log_index::add_commit(message_state& m, std::uint64_t seg, const record_header& h,
                           std::span<const char> payload) {
  envelope env;
  if (!decode(payload, env)) return skip(h, "undecodable envelope");
  if (h.sequence > _charges_after && !env.account.empty() &&
      (env.quota_relays != 0 || env.block_relays != 0)) {
    _charges.push_back({h.sequence, env.account, env.day, env.quota_relays, env.block_relays});
    _last_charge[seg] = h.sequence;
  }
  std::uint64_t total = 0;
  for (const auto& e : m.gathering) total += e.length;
  bool complete = total == env.wire_size;
  // A later commit is a copy made to free an old segment; it takes over
  // unless its body is damaged and the earlier one's is not.
  if (!m.committed || complete || !m.body_complete) {
    m.env = std::move(env);
    m.body = std::move(m.gathering);
    m.body_complete = complete;
    m.body_commit_segment = seg;
  }
  m.gathering.clear();
  if (!m.committed) m.commit_order = h.sequence;
  m.committed = true;
  note_segment(m.commit_segments, seg);
}

void log_index::add_state(message_state& m, std::uint64_t seg, const record_header& h,
                          std::span<const char> payload) {
  if (h.type == record_type::deferred) {
    deferred_state d;
    if (!decode_deferred(payload, d)) return skip(h, "undecodable deferred record");
    std::sort(d.pending.begin(), d.pending.end());
    if (m.allowed) {
      std::vector<std::uint32_t> both;
      std::set_intersection(m.allowed->begin(), m.allowed->end(), d.pending.begin(),
                            d.pending.end(), std::back_inserter(both));
      m.allowed = std::move(both);
    } else {
      m.allowed = std::move(d.pending);
    }
    m.next_attempt = d.next_attempt;
    m.attempts = d.attempts;
    m.state_segments_since_deferred.clear();
  } else {
    failure f;
    bool ok = h.type == record_type::done ? decode_done(payload, f.recipients)
                                          : decode_failed(payload, f);
    if (!ok) return skip(h, "undecodable state record");
    if (f.recipients.empty()) m.all_finished = true;
    m.removed.insert(m.removed.end(), f.recipients.begin(), f.recipients.end());
  }
  note_segment(m.state_segments, seg);
  note_segment(m.state_segments_since_deferred, seg);
}

struct segment_scan {
  std::uint64_t end = 0;              // octets kept
  std::optional<std::string> damage;  // why the scan stopped before the data's end
};

// Walks one segment's records until the file's end, its zero-filled
// unwritten part, or the first record that fails a check.
segment_scan scan_segment(segment_reader& r, std::uint64_t seg, std::uint64_t size,
                          std::uint64_t& last_sequence, log_index& index) {
  std::uint64_t off = 0;
  while (off < size) {
    auto avail = static_cast<std::size_t>(std::min<std::uint64_t>(header_size, size - off));
    auto raw = r.view(off, avail);
    bool zero = std::all_of(raw.begin(), raw.end(), [](char c) { return c == 0; });
    if (avail < header_size)
      return {off, zero ? std::nullopt : std::optional<std::string>("truncated header")};
    record_header h;
    switch (decode_header(raw.first<header_size>(), h)) {
      case header_status::empty:
        return {off, std::nullopt};
      case header_status::bad_magic:
        return {off, "bad magic"};
      case header_status::bad_version:
        return {off, "unknown header version"};
      case header_status::ok:
        break;
    }
    auto limit = h.type == record_type::body ? max_body_payload : max_payload;
    if (h.payload_len > limit) return {off, "payload length over the limit"};
    if (record_size(h.payload_len) > size - off) return {off, "record runs past the end"};
    auto payload = r.view(off + header_size, h.payload_len);
    record_crc crc(h);
    crc.update(payload);
    if (crc.value() != h.crc) return {off, "CRC mismatch"};
    // Bytes left by an older use of this space would carry older numbers.
    if (h.sequence <= last_sequence) return {off, "sequence not increasing (stale data)"};
    last_sequence = h.sequence;
    index.add(seg, off, h, payload);
    off += record_size(h.payload_len);
  }
  return {off, std::nullopt};
}

std::string ensure_shard_directory(const std::string& spool_dir, unsigned shard) {
  auto dir = shard_directory(spool_dir, shard);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    int err = errno;
    // The spool root is the operator's to create, with its owner and mount.
    if (err == ENOENT) {
      throw std::runtime_error("cannot create spool directory " + dir + ": spool.dir " + spool_dir +
                               " does not exist; create it for the server's user");
    }
    fail("cannot create spool directory", dir, err);
  }
  return dir;
}

std::vector<std::uint64_t> list_segments(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) fail("cannot read spool directory", dir, errno);
  std::vector<std::uint64_t> seqs;
  errno = 0;
  while (auto* e = ::readdir(d)) {
    if (auto seq = parse_segment_name(e->d_name)) seqs.push_back(*seq);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) fail("cannot read spool directory", dir, err);
  std::sort(seqs.begin(), seqs.end());
  return seqs;
}

void sync_directory(const std::string& dir) {
  file d(dir, O_RDONLY | O_DIRECTORY);
  if (::fsync(d.fd()) != 0) fail("cannot sync spool directory", dir, errno);
}

// Scans one segment and cuts it to what was kept; returns the kept size.
std::uint64_t recover_segment(const std::string& path, std::uint64_t seq, bool newest,
                              std::uint64_t& last_sequence, log_index& index,
                              std::vector<char>& buffer, recovery_result& result) {
  file f(path, O_RDWR);
  struct stat st;
  if (::fstat(f.fd(), &st) != 0) fail("cannot stat spool file", path, errno);
  auto size = static_cast<std::uint64_t>(st.st_size);
  segment_reader reader(f.fd(), size, path, buffer);
  auto scan = scan_segment(reader, seq, size, last_sequence, index);
  if (scan.end < size) {
    // Cutting the unwritten tail too returns the preallocated space; the
    // writer never appends to a segment it did not create in this run.
    if (::ftruncate(f.fd(), static_cast<off_t>(scan.end)) != 0) {
      fail("cannot truncate spool file", path, errno);
    }
    if (::fsync(f.fd()) != 0) fail("cannot sync spool file", path, errno);
  }
  if (scan.damage) {
    damage d{seq, scan.end, *scan.damage};
    if (newest) {
      RR_WARN(
          "spool_torn_tail file=%s offset=%llu reason=\"%s\" action=cut (writes a crash left "
          "unfinished; never acknowledged)",
          path.c_str(), static_cast<unsigned long long>(scan.end), scan.damage->c_str());
      result.torn_tail = std::move(d);
    } else {
      RR_ERROR(
          "spool_damage file=%s offset=%llu reason=\"%s\" action=cut (the rest of this "
          "segment is lost; check the disk)",
          path.c_str(), static_cast<unsigned long long>(scan.end), scan.damage->c_str());
      result.lost.push_back(std::move(d));
    }
  }
  return scan.end;
}

struct finished_pin {
  const std::vector<std::uint64_t>* commits;
  const std::vector<std::uint64_t>* states;
};

// Sorts the index into the result: pending messages (in commit order),
// incomplete ones, the discarded count, and the pins of finished ones.
std::vector<finished_pin> collect_messages(std::map<util::queue_id, message_state>& index,
                                           recovery_result& result) {
  std::vector<finished_pin> pins;
  std::vector<std::pair<std::uint64_t, recovered_message>> pending;
  for (auto& [id, m] : index) {
    if (!m.committed) {
      if (m.has_body_records) ++result.discarded;
      continue;
    }
    auto recipients = m.pending();
    if (recipients.empty()) {
      pins.push_back({&m.commit_segments, &m.state_segments});
      continue;
    }
    recovered_message out;
    out.id = id;
    out.pending = std::move(recipients);
    out.next_attempt = m.next_attempt;
    out.attempts = m.attempts;
    out.commit_segment = m.body_commit_segment;
    out.segments = m.live_segments();
    out.env = std::move(m.env);
    out.body = std::move(m.body);
    if (!m.body_complete) {
      RR_ERROR(
          "spool_message_incomplete id=%s from=<%s> recipients=%zu reason=\"body records "
          "lost to damage\" action=kept, not delivered",
          util::format_queue_id(id).c_str(), out.env.sender.c_str(), out.pending.size());
      result.incomplete.push_back(std::move(out));
      continue;
    }
    pending.emplace_back(m.commit_order, std::move(out));
  }
  std::sort(pending.begin(), pending.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& p : pending) result.messages.push_back(std::move(p.second));
  return pins;
}

// The segments to keep: the newest, those where a message is live, and,
// closed over, those holding state records of a finished message while a
// segment holding one of its commits is kept (recovery.hh).
std::vector<bool> segments_to_keep(const std::vector<std::uint64_t>& seqs,
                                   const recovery_result& result,
                                   const std::vector<finished_pin>& pins, log_index& index) {
  auto index_of = [&](std::uint64_t seq) {
    return static_cast<std::size_t>(std::lower_bound(seqs.begin(), seqs.end(), seq) - seqs.begin());
  };
  std::vector<bool> keep(seqs.size(), false);
  if (!seqs.empty()) keep.back() = true;
  for (std::size_t i = 0; i < seqs.size(); ++i)
    if (index.last_charge(seqs[i]) != 0) keep[i] = true;
  for (const auto* list : {&result.messages, &result.incomplete}) {
    for (const auto& m : *list) {
      for (auto s : m.segments) keep[index_of(s)] = true;
    }
  }
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& pin : pins) {
      bool held = std::any_of(pin.commits->begin(), pin.commits->end(),
                              [&](std::uint64_t s) { return keep[index_of(s)]; });
      if (!held) continue;
      for (auto s : *pin.states) {
        auto i = index_of(s);
        if (keep[i]) continue;
        keep[i] = true;
        grew = true;
      }
    }
  }
  return keep;
}

void describe_segments(const std::vector<std::uint64_t>& seqs,
                       const std::vector<std::uint64_t>& sizes, const std::vector<bool>& keep,
                       const log_index& index, recovery_result& result) {
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (keep[i]) result.segments.push_back({seqs[i], sizes[i], {}, index.last_charge(seqs[i])});
  }
  for (const auto* list : {&result.messages, &result.incomplete}) {
    for (const auto& m : *list) {
      for (auto s : m.segments) {
        auto it =
            std::lower_bound(result.segments.begin(), result.segments.end(), s,
                             [](const segment_info& a, std::uint64_t b) { return a.seq < b; });
        it->live.push_back(m.id);
      }
    }
  }
  for (auto& s : result.segments) std::sort(s.live.begin(), s.live.end());
}

}  // namespace

recovery_result recover(const std::string& spool_dir, unsigned shard, std::uint64_t charges_after) {
  auto dir = ensure_shard_directory(spool_dir, shard);
  auto seqs = list_segments(dir);
  recovery_result result;
  log_index index(charges_after);
  std::vector<std::uint64_t> sizes;
  std::uint64_t last_sequence = 0;
  std::vector<char> buffer;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    sizes.push_back(recover_segment(dir + "/" + segment_name(seqs[i]), seqs[i],
                                    i + 1 == seqs.size(), last_sequence, index, buffer, result));
  }
  result.skipped_records = index.skipped();
  auto pins = collect_messages(index.messages(), result);
  auto keep = segments_to_keep(seqs, result, pins, index);
  // Ascending, each unlink durable before the next: a message's commit comes
  // before its state records in the log, so a crash part way through never
  // leaves a commit whose done record is already gone.
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (keep[i]) continue;
    auto path = dir + "/" + segment_name(seqs[i]);
    if (::unlink(path.c_str()) != 0) fail("cannot delete spool file", path, errno);
    sync_directory(dir);
    ++result.deleted_segments;
  }
  describe_segments(seqs, sizes, keep, index, result);
  result.charges = std::move(index.charges());
  result.next_sequence = last_sequence + 1;
  result.next_segment = seqs.empty() ? 1 : seqs.back() + 1;
  RR_INFO(
      "spool_recovered shard=%u segments=%zu deleted=%zu pending=%zu incomplete=%zu "
      "discarded=%zu skipped=%zu torn_tail=%s lost=%zu charges_replayed=%zu",
      shard, result.segments.size(), result.deleted_segments, result.messages.size(),
      result.incomplete.size(), result.discarded, result.skipped_records,
      result.torn_tail ? "cut" : "none", result.lost.size(), result.charges.size());
  return result;
}

void read_extents(const std::string& spool_dir, unsigned shard, std::span<const extent> extents,
                  std::string& out) {
  file f;
  std::optional<std::uint64_t> open_seq;
  std::string path;
  for (const auto& e : extents) {
    if (open_seq != e.segment) {
      path = segment_path(spool_dir, shard, e.segment);
      f.open(path, O_RDONLY);
      open_seq = e.segment;
    }
    auto at = out.size();
    out.resize(at + e.length);
    read_exactly(f.fd(), out.data() + at, e.length, e.offset, path);
  }
}

}  // namespace ringrelay::spool
