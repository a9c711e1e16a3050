// ringbench/message — the messages `ringbench send` sends, prepared once.
//
// For each size of the --size mix, one `message_template` holds everything
// that does not change from message to message: the body (76-character
// lines of printable text, some beginning with "." or "..", and one in
// fifty a lone ".", so the server's dot-stuffing and end-of-data handling
// are exercised), already dot-stuffed and followed by the terminating ".\r\n",
// its CRC-32C, the header block with a fixed-width placeholder for the
// message's ID, and the MAIL/RCPT/DATA commands. Sending a message then
// costs a patch of 14 octets in a copy of the ~330-octet header; the body
// goes out from the shared buffer.
//
// The CRC covers the body after the header block, unstuffed: exactly what
// `body_verifier` recomputes on the receiving side.
//
// Built on the main thread at startup; read-only afterwards and shared by
// every thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::ringbench {

struct message_template {
  std::uint64_t size = 0;               // header block + body: the RFC 1870 size, SIZE=
  std::string header;                   // ends with the empty line; ID placeholders inside
  std::vector<std::size_t> id_offsets;  // where each id_width-octet ID goes
  std::string wire_body;                // dot-stuffed body + ".\r\n"
  std::uint32_t body_crc = 0;
  std::string mail_with_size;  // "MAIL FROM:<...> SIZE=n\r\n"
  std::string mail_plain;      // "MAIL FROM:<...>\r\n" for servers without SIZE
  std::string rcpts_and_data;  // "RCPT TO:<...>\r\n"... "DATA\r\n"
  // End offset in `rcpts_and_data` of each RCPT line, then of DATA.
  std::vector<std::size_t> command_ends;
};

struct message_params {
  std::uint64_t size = 1024;
  std::string from;
  std::string to_domain;
  std::uint32_t rcpts = 1;
  std::string date;    // RFC 5322 date of the run's start
  std::string run_id;  // makes Message-IDs unique across runs
};

// "TTT-SSSSSSSSSS": thread, then the thread's message sequence number.
inline constexpr std::size_t id_width = 14;
// The smallest --size accepted: the header block plus one short line.
std::uint64_t min_message_size(const message_params& p);

// Throws std::invalid_argument when p.size < min_message_size(p).
message_template make_message(const message_params& p);

// Writes the ID of message `seq` of thread `thread` (id_width octets).
void format_id(unsigned thread, std::uint64_t seq, char* out);

// The unstuffed body of `size` octets (exposed for tests and the verifier's
// self-check): lines of at most 76 characters plus CRLF.
std::string make_body(std::size_t size, std::uint64_t seed);
// Dot-stuffs `body` (RFC 5321 4.5.2) and appends ".\r\n".
std::string stuff_and_terminate(std::string_view body);

}  // namespace ringrelay::ringbench
