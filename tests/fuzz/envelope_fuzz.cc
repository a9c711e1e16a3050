// Fuzz target: spool::decode of an envelope read from disk.
//
// The input is the commit record's payload. Beyond never reading outside it
// (ASan) and never allocating more than it implies, decode must accept
// exactly one encoding per envelope: whatever it accepts encodes back to the
// same octets, so nothing the spool reads can mean two things.
#include <cstddef>
#include <cstdint>
#include <ringrelay/spool/envelope.hh>
#include <span>
#include <string>

#include "fuzz_input.hh"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const char> in(reinterpret_cast<const char*>(data), size);
  ringrelay::spool::envelope env;
  if (!ringrelay::spool::decode(in, env)) return 0;
  // Every recipient takes at least its 4-octet length.
  ringrelay::fuzz::check(env.recipients.size() <= size / 4);
  const std::string again = ringrelay::spool::encode(env);
  ringrelay::fuzz::check(std::string_view(again) == std::string_view(in.data(), in.size()));
  return 0;
}
