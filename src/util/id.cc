#include <ringrelay/util/id.hh>

namespace ringrelay::util {

// Layout: 34 bits of seconds | 6 bits of shard | 24 bits of counter. The
// counter restarts each second; if a shard ever issues more than 2^24 IDs in
// one second it borrows the next second, so IDs never repeat.
queue_id queue_id_generator::next(std::int64_t wall) {
  if (wall > _second) {
    _second = wall;
    _counter = 0;
  } else if (_counter == (1u << 24)) {
    ++_second;
    _counter = 0;
  }
  auto seconds = static_cast<std::uint64_t>(_second) & ((1ull << 34) - 1);
  return (seconds << 30) | (std::uint64_t{_shard} << 24) | _counter++;
}

void format_queue_id(queue_id id, char (&out)[17]) {
  static constexpr char hex[] = "0123456789ABCDEF";
  for (int i = 15; i >= 0; --i) {
    out[i] = hex[id & 0xf];
    id >>= 4;
  }
  out[16] = '\0';
}

std::string format_queue_id(queue_id id) {
  char buf[17];
  format_queue_id(id, buf);
  return buf;
}

}  // namespace ringrelay::util
