#include <arpa/inet.h>

#include <algorithm>
#include <ringrelay/dns/answer.hh>

namespace ringrelay::dns {
namespace {

constexpr std::size_t header_size = 12;       // RFC 1035 4.1.1
constexpr std::size_t max_name_octets = 255;  // RFC 1035 2.3.4, in wire form
constexpr std::uint16_t class_in = 1;
constexpr std::uint16_t flag_qr = 0x8000;
constexpr std::uint16_t flag_tc = 0x0200;

// The fixed part of a resource record, after its owner name.
struct rr_header {
  std::string name;
  std::uint16_t type = 0;
  std::uint16_t cls = 0;
  std::uint32_t ttl = 0;
  std::size_t rdata = 0;  // offset of the rdata
  std::size_t rdlength = 0;
};

class reader {
 public:
  explicit reader(std::span<const std::uint8_t> wire) : _w(wire) {}

  std::size_t pos = 0;

  bool has(std::size_t n) const { return n <= _w.size() - pos; }

  std::uint16_t u16_at(std::size_t at) const {
    return static_cast<std::uint16_t>((_w[at] << 8) | _w[at + 1]);
  }

  std::uint32_t u32_at(std::size_t at) const {
    return (std::uint32_t{u16_at(at)} << 16) | u16_at(at + 2);
  }

  // Reads the name at `pos` into `out` and moves `pos` past its in-line
  // part (up to and including the first pointer, or the root label).
  parse_error name(std::string& out) {
    out.clear();
    std::size_t p = pos;
    std::size_t run_start = pos;  // where the label run being read began
    std::size_t end = 0;          // set at the first pointer or the root label
    std::size_t octets = 1;       // the root label
    for (;;) {
      if (p >= _w.size()) return parse_error::truncated;
      const std::uint8_t len = _w[p];
      if (len == 0) {
        if (end == 0) end = p + 1;
        break;
      }
      if ((len & 0xC0) == 0xC0) {
        if (p + 1 >= _w.size()) return parse_error::truncated;
        const std::size_t target = (std::size_t{len & 0x3Fu} << 8) | _w[p + 1];
        if (end == 0) end = p + 2;
        // Each jump must land before the run that led to it, so every jump
        // lands strictly earlier than the one before: the walk ends after at
        // most one jump per octet of the message, whatever it holds.
        if (target >= run_start) return parse_error::name_loop;
        p = target;
        run_start = target;
        continue;
      }
      if ((len & 0xC0) != 0) return parse_error::bad_label;
      if (len >= _w.size() - p) return parse_error::truncated;
      octets += len + 1u;
      if (octets > max_name_octets) return parse_error::name_too_long;
      if (!out.empty()) out.push_back('.');
      append_label(out, _w.subspan(p + 1, len));
      p += 1u + len;
    }
    pos = end;
    return parse_error::ok;
  }

  parse_error rr(rr_header& h) {
    if (auto e = name(h.name); e != parse_error::ok) return e;
    if (!has(10)) return parse_error::truncated;
    h.type = u16_at(pos);
    h.cls = u16_at(pos + 2);
    h.ttl = u32_at(pos + 4);
    // RFC 2181 §8: a TTL with the most significant bit set is read as zero.
    if (h.ttl & 0x80000000u) h.ttl = 0;
    h.rdlength = u16_at(pos + 8);
    pos += 10;
    if (!has(h.rdlength)) return parse_error::truncated;
    h.rdata = pos;
    pos += h.rdlength;
    return parse_error::ok;
  }

  // A name that must fill the rest of the rdata ending at `end`.
  parse_error rdata_name(std::size_t at, std::size_t end, std::string& out) {
    const std::size_t saved = pos;
    pos = at;
    parse_error e = name(out);
    if (e == parse_error::ok && pos != end) e = parse_error::bad_rdata;
    pos = saved;
    return e;
  }

  parse_error txt(const rr_header& h, std::string& out) const {
    std::size_t p = h.rdata;
    const std::size_t end = h.rdata + h.rdlength;
    if (p == end) return parse_error::bad_rdata;  // one string at least (RFC 1035 3.3.14)
    while (p < end) {
      const std::size_t len = _w[p];
      if (len >= end - p) return parse_error::bad_rdata;
      out.append(reinterpret_cast<const char*>(_w.data() + p + 1), len);
      p += 1 + len;
    }
    return parse_error::ok;
  }

  const std::uint8_t* at(std::size_t offset) const { return _w.data() + offset; }

 private:
  static void append_label(std::string& out, std::span<const std::uint8_t> label) {
    for (std::uint8_t c : label) {
      if (c >= 'A' && c <= 'Z') c = static_cast<std::uint8_t>(c - 'A' + 'a');
      if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
        out.push_back(static_cast<char>(c));
      } else {
        out.push_back('\\');
        out.push_back(static_cast<char>('0' + c / 100));
        out.push_back(static_cast<char>('0' + c / 10 % 10));
        out.push_back(static_cast<char>('0' + c % 10));
      }
    }
  }

  std::span<const std::uint8_t> _w;
};

// Decodes an answer record's rdata into `rec`; `kept` is false when its
// type is not one we keep (its rdata is then skipped unread).
parse_error decode(reader& r, const rr_header& h, record& rec, bool& kept) {
  kept = true;
  const std::size_t end = h.rdata + h.rdlength;
  switch (static_cast<rr_type>(h.type)) {
    case rr_type::a:
      if (h.rdlength != 4) return parse_error::bad_rdata;
      std::copy_n(r.at(h.rdata), 4, rec.address.begin());
      return parse_error::ok;
    case rr_type::aaaa:
      if (h.rdlength != 16) return parse_error::bad_rdata;
      std::copy_n(r.at(h.rdata), 16, rec.address.begin());
      return parse_error::ok;
    case rr_type::mx:
      if (h.rdlength < 3) return parse_error::bad_rdata;
      rec.preference = r.u16_at(h.rdata);
      return r.rdata_name(h.rdata + 2, end, rec.target);
    case rr_type::cname:
      return r.rdata_name(h.rdata, end, rec.target);
    case rr_type::txt:
      return r.txt(h, rec.text);
    default:
      kept = false;
      return parse_error::ok;
  }
}

parse_error read_soa(reader& r, const rr_header& h, soa_record& soa) {
  std::string mname, rname;
  const std::size_t saved = r.pos;
  r.pos = h.rdata;
  parse_error e = r.name(mname);
  if (e == parse_error::ok) e = r.name(rname);
  // SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM: the rdata ends with them.
  if (e == parse_error::ok && r.pos + 20 != h.rdata + h.rdlength) e = parse_error::bad_rdata;
  if (e == parse_error::ok) {
    soa.zone = h.name;
    soa.ttl = h.ttl;
    soa.minimum = r.u32_at(r.pos + 16);
  }
  r.pos = saved;
  return e;
}

}  // namespace

const char* type_name(rr_type t) {
  switch (t) {
    case rr_type::a:
      return "A";
    case rr_type::ns:
      return "NS";
    case rr_type::cname:
      return "CNAME";
    case rr_type::soa:
      return "SOA";
    case rr_type::mx:
      return "MX";
    case rr_type::txt:
      return "TXT";
    case rr_type::aaaa:
      return "AAAA";
  }
  return "other";
}

std::string record::address_text() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (type == rr_type::a) return inet_ntop(AF_INET, address.data(), buf, sizeof buf);
  if (type == rr_type::aaaa) return inet_ntop(AF_INET6, address.data(), buf, sizeof buf);
  return "";
}

std::optional<std::uint32_t> answer::negative_ttl() const {
  if (!soa) return std::nullopt;
  return std::min(soa->ttl, soa->minimum);
}

const char* describe(parse_error e) {
  switch (e) {
    case parse_error::ok:
      return "ok";
    case parse_error::short_header:
      return "message shorter than a DNS header";
    case parse_error::not_a_response:
      return "not a response";
    case parse_error::truncated:
      return "message ends inside a section";
    case parse_error::bad_label:
      return "unknown label type";
    case parse_error::name_loop:
      return "compression pointer that does not point backwards";
    case parse_error::name_too_long:
      return "name longer than 255 octets";
    case parse_error::bad_rdata:
      return "record data that does not fit its type";
  }
  return "unknown error";
}

parse_error parse_answer(std::span<const std::uint8_t> wire, answer& out) {
  out = answer{};
  if (wire.size() < header_size) return parse_error::short_header;
  reader r(wire);
  out.id = r.u16_at(0);
  const std::uint16_t flags = r.u16_at(2);
  if (!(flags & flag_qr)) return parse_error::not_a_response;
  out.truncated = flags & flag_tc;
  out.code = static_cast<rcode>(flags & 0x0F);
  const std::uint16_t questions = r.u16_at(4);
  const std::uint16_t answers = r.u16_at(6);
  const std::uint16_t authorities = r.u16_at(8);
  r.pos = header_size;

  std::string name;
  for (std::uint16_t i = 0; i < questions; ++i) {
    if (auto e = r.name(name); e != parse_error::ok) return e;
    if (!r.has(4)) return parse_error::truncated;
    if (i == 0) {
      out.question = name;
      out.question_type = static_cast<rr_type>(r.u16_at(r.pos));
    }
    r.pos += 4;
  }

  rr_header h;
  for (std::uint16_t i = 0; i < answers; ++i) {
    if (auto e = r.rr(h); e != parse_error::ok) return e;
    if (h.cls != class_in) continue;
    record rec;
    bool kept = false;
    if (auto e = decode(r, h, rec, kept); e != parse_error::ok) return e;
    if (!kept) continue;
    rec.name = h.name;
    rec.type = static_cast<rr_type>(h.type);
    rec.ttl = h.ttl;
    out.records.push_back(std::move(rec));
  }

  for (std::uint16_t i = 0; i < authorities; ++i) {
    if (auto e = r.rr(h); e != parse_error::ok) return e;
    if (h.cls != class_in || static_cast<rr_type>(h.type) != rr_type::soa || out.soa) continue;
    soa_record soa;
    if (auto e = read_soa(r, h, soa); e != parse_error::ok) return e;
    out.soa = std::move(soa);
  }
  return parse_error::ok;
}

}  // namespace ringrelay::dns
