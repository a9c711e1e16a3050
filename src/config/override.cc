#include "override.hh"

#include <optional>
#include <ringrelay/config/config.hh>
#include <vector>

namespace ringrelay::config::detail {
namespace {

class override_applier {
 public:
  override_applier(std::string_view text, std::uint32_t origin)
      : _label("--set " + std::string(text)), _origin(origin) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw config_error(_label + ": " + what);
  }

  std::vector<std::string> split_key(std::string_view key) const {
    std::vector<std::string> segments;
    std::size_t start = 0;
    for (;;) {
      auto dot = key.find('.', start);
      auto segment = key.substr(start, dot == std::string_view::npos ? dot : dot - start);
      if (segment.empty()) fail("the key " + quote(key) + " has an empty part");
      segments.emplace_back(segment);
      if (dot == std::string_view::npos) return segments;
      start = dot + 1;
    }
  }

  // A value that does not parse as JSON is meant as a string: an unquoted
  // host name or path is the common case on a command line.
  json_value parse_value(std::string_view text) const {
    auto parsed = parse_json(text, _origin);
    if (parsed.value) return std::move(*parsed.value);
    if (parsed.duplicate_key) fail(parsed.error);
    json_value string;
    string.type = json_value::kind::string;
    string.text = std::string(text);
    string.origin = _origin;
    return string;
  }

  // The slot named `segment` under `node` (whose dotted path is `path`).
  // A missing slot is created: an empty object on the way to the key, a
  // placeholder for the key itself.
  json_value& slot(json_value& node, const std::string& segment, const std::string& path,
                   bool on_the_way) const {
    json_value created;
    created.origin = _origin;
    if (on_the_way) created.type = json_value::kind::object;
    if (node.type == json_value::kind::object) {
      if (auto* found = node.find(segment)) return *found;
      node.members.push_back({segment, std::move(created)});
      return node.members.back().value;
    }
    if (node.type == json_value::kind::array) {
      auto index = parse_index(segment);
      if (index && *index < node.items.size()) return node.items[*index];
      if (index && *index == node.items.size()) return node.items.emplace_back(std::move(created));
      auto n = std::to_string(node.items.size());
      fail(quote(path) + " is an array of " + n + ": an index from 0 to " + n +
           " (to append) is expected, not " + quote(segment));
    }
    fail(quote(path) + " is " + std::string(describe(node)) + ", not an object or array");
  }

  std::string apply(json_value& root, std::string_view text) const {
    auto eq = text.find('=');
    if (eq == std::string_view::npos) fail("expected KEY=VALUE, as in --set limits.recipients=500");
    std::string key(text.substr(0, eq));
    auto segments = split_key(key);
    json_value value = parse_value(text.substr(eq + 1));
    json_value* node = &root;
    std::string path;
    for (std::size_t i = 0; i < segments.size(); ++i) {
      node = &slot(*node, segments[i], path, i + 1 < segments.size());
      path += (path.empty() ? "" : ".") + segments[i];
    }
    *node = std::move(value);
    return key;
  }

 private:
  static std::optional<std::size_t> parse_index(const std::string& s) {
    if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    std::size_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::size_t>(c - '0');
    }
    return n;
  }

  std::string _label;
  std::uint32_t _origin;
};

}  // namespace

std::string apply_override(json_value& root, std::string_view text, std::uint32_t origin) {
  return override_applier(text, origin).apply(root, text);
}

}  // namespace ringrelay::config::detail
