// wire_form — reads a body in the spool's DATA wire form back, for the
// bounce unit tests and the bounce fuzz target: CRLF line ends only, at
// most 998 octets a line, every line that starts with "." stuffed.
#pragma once

#include <string>
#include <string_view>

namespace ringrelay::delivery::test {

// The body unstuffed; `problem` is set to the first broken promise (and
// left empty when there is none).
inline std::string unstuff(std::string_view wire, std::string& problem) {
  std::string plain;
  problem.clear();
  if (!wire.ends_with("\r\n")) problem = "no CRLF at the end";
  while (!wire.empty()) {
    const std::size_t end = wire.find("\r\n");
    if (end == std::string_view::npos) break;
    std::string_view line = wire.substr(0, end);
    if (problem.empty() && line.find_first_of("\r\n") != std::string_view::npos)
      problem = "bare CR or LF: " + std::string(line);
    if (problem.empty() && line.size() > 998) problem = "a line over 998 octets";
    if (line.starts_with(".")) {
      if (problem.empty() && !line.starts_with(".."))
        problem = "unstuffed dot: " + std::string(line);
      line.remove_prefix(1);
    }
    plain.append(line).append("\r\n");
    wire.remove_prefix(end + 2);
  }
  return plain;
}

}  // namespace ringrelay::delivery::test
