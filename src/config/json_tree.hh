// config/json_tree — a small owned JSON tree, built with simdjson On Demand.
//
// Why a tree and not On Demand straight into the structs: `--set` overrides
// are applied before validation, including for keys the file lacks, and
// every error must name where its value came from (the file or one --set).
// On Demand is a forward-only cursor over one buffer, so the file is walked
// once into this tree (On Demand is what DESIGN.md names, and a single full
// walk is all the DOM API would add), overrides edit the tree, and
// validation reads it. A config is a few kilobytes: the copy is free.
// Private to the config module; startup code only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::config::detail {

struct json_member;

struct json_value {
  enum class kind { null, boolean, number, string, array, object };

  kind type = kind::null;
  bool boolean = false;
  std::optional<std::int64_t> integer;  // numbers written as integers that fit in 64 bits
  std::string text;                     // a string's contents, or a number as written
  std::vector<json_value> items;        // array elements
  std::vector<json_member> members;     // object members, in order
  std::uint32_t origin = 0;             // who wrote it: 0 = the file, i = the i-th --set

  const json_value* find(std::string_view key) const;
  json_value* find(std::string_view key);
  // Sets `origin` on this value and everything under it.
  void set_origin(std::uint32_t o);
};

struct json_member {
  std::string key;
  json_value value;
};

struct json_parse_result {
  std::optional<json_value> value;    // set on success
  std::string error;                  // otherwise: what is wrong
  std::optional<std::size_t> offset;  // byte offset of the problem, when known
  bool duplicate_key = false;         // valid JSON, but an object repeats a key
};

// Parses one JSON text (any type at the top). Every value gets `origin`.
json_parse_result parse_json(std::string_view text, std::uint32_t origin);

// The value as compact JSON for messages, cut after `max` characters.
std::string render(const json_value& v, std::size_t max = 60);
// `s` as a JSON string literal.
std::string quote(std::string_view s);
// "an integer", "a string", "an object", ...
std::string_view describe(const json_value& v);

}  // namespace ringrelay::config::detail
