#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <ringrelay/reactor/buffer_pool.hh>
#include <stdexcept>
#include <string>

namespace ringrelay::reactor {

buffer_pool::buffer_pool(io_uring* ring, std::uint16_t group, std::uint32_t count,
                         std::uint32_t size)
    : _ring(ring), _group(group), _count(count), _size(size), _refs(count, 0) {
  if (count == 0 || count > 32768 || (count & (count - 1)))
    throw std::runtime_error("io.recv_buffers must be a power of two up to 32768");
  // The ring of buffer descriptors must be page aligned (io_uring_register_buf_ring).
  _br_bytes = sizeof(io_uring_buf) * count;
  void* br = mmap(nullptr, _br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (br == MAP_FAILED) throw std::runtime_error("mmap for the buffer ring failed");
  _br = static_cast<io_uring_buf_ring*>(br);
  void* mem = mmap(nullptr, std::size_t{count} * size, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap for receive buffers failed");
  _memory = static_cast<char*>(mem);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(_br);
  reg.ring_entries = count;
  reg.bgid = group;
  int rc = io_uring_register_buf_ring(_ring, &reg, 0);
  if (rc < 0)
    throw std::runtime_error(std::string("registering the provided-buffer ring failed: ") +
                             strerror(-rc) + " (needs Linux 5.19 or newer)");
  io_uring_buf_ring_init(_br);
  int mask = io_uring_buf_ring_mask(count);
  for (std::uint32_t i = 0; i < count; ++i)
    io_uring_buf_ring_add(_br, _memory + std::size_t{i} * size, size,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  io_uring_buf_ring_advance(_br, static_cast<int>(count));
  _available = count;
}

buffer_pool::~buffer_pool() {
  io_uring_unregister_buf_ring(_ring, _group);
  munmap(_br, _br_bytes);
  munmap(_memory, std::size_t{_count} * _size);
}

void buffer_pool::taken(std::uint16_t id) {
  _refs[id] = 1;
  --_available;
}

void buffer_pool::unref(std::uint16_t id) {
  if (--_refs[id] != 0) return;
  io_uring_buf_ring_add(_br, _memory + std::size_t{id} * _size, _size, id,
                        io_uring_buf_ring_mask(_count), static_cast<int>(_returned));
  ++_returned;
}

void buffer_pool::publish() {
  if (_returned == 0) return;
  io_uring_buf_ring_advance(_br, static_cast<int>(_returned));
  _available += _returned;
  _returned = 0;
}

local_pool::local_pool(std::uint32_t count, std::uint32_t size)
    : _count(count), _size(size), _refs(count, 0) {
  if (count == 0 || count > 65536) throw std::runtime_error("local_pool: bad buffer count");
  // Anonymous memory: only buffers actually used become resident.
  void* mem = mmap(nullptr, std::size_t{count} * size, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap for TLS buffers failed");
  _memory = static_cast<char*>(mem);
  _free.reserve(count);
  for (std::uint32_t i = count; i-- > 0;) _free.push_back(static_cast<std::uint16_t>(i));
}

local_pool::~local_pool() {
  munmap(_memory, std::size_t{_count} * _size);
}

bool local_pool::acquire(std::uint16_t& id) {
  if (_free.empty()) return false;
  id = _free.back();
  _free.pop_back();
  _refs[id] = 1;
  return true;
}

void local_pool::unref(std::uint16_t id) {
  if (--_refs[id] == 0) _free.push_back(id);
}

}  // namespace ringrelay::reactor
