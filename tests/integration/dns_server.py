"""A real DNS server for the integration tests (Debian's python3-dnspython).

It serves names described by a dict (or a JSON file) on 127.0.0.1:<port>,
over UDP and TCP on the same port, so ringrelay's resolver can be pointed at
it with `--set dns.servers=["127.0.0.1:PORT"]`:

    names = {
        "sender.example": {"MX": ["10 mx.sender.example."], "TXT": ["v=spf1 -all"]},
        "mx.sender.example": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
        "nomail.example": {"MX": ["0 ."]},                # null MX (RFC 7505)
        "alias.example": {"CNAME": "mx.sender.example."},  # followed like a resolver does
        "short.example": {"A": ["192.0.2.1"], "ttl": 5},   # TTL of its records (default 300)
        "broken.example": "servfail",                      # always SERVFAIL
        "slow.example": "timeout",                         # read, never answered
    }
    zones = {"example": {"ttl": 3600, "minimum": 300}}    # the SOA of negative answers

Record data is zone-file text (dnspython's rdata syntax); names in it may
leave out the final dot. A TXT value that does not start with a quote is one
string. Names are matched without regard to case or a final dot.

Answers, as a recursive resolver would give them:
- records of the asked type at the name: those, authoritative (AA);
- a CNAME at the name: the CNAME, then what its target has (chains of up to
  8 are followed; a target not served here ends in NXDOMAIN, RFC 6604);
- a served name without the asked type: NODATA (NOERROR, empty answer) with
  the SOA in the authority section;
- a name not served: NXDOMAIN with the SOA.
The SOA is that of the longest `zones` entry enclosing the name, or else of
a zone made of the name's last two labels (TTL 3600, MINIMUM 300). An SOA
query at a zone's apex gets the SOA. A UDP answer that does not fit in 512
octets (or the client's EDNS size) goes out truncated (TC), so the client
asks again over TCP.

From a test (the runner's process group ends it if the test hangs):

    with DNSServer(names, zones) as dns:
        relay = h.Relay(sink, sets=dns.relay_sets())
        ...
        dns.queries   # [(name, type, "udp" | "tcp"), ...] in arrival order

By hand: /usr/bin/python3 tests/integration/dns_server.py ZONES.json
[--host 127.0.0.1] [--port 5353], where the file holds {"names": {...},
"zones": {...}} or just the names; it serves until interrupted.
"""
from __future__ import annotations

import argparse
import json
import socket
import struct
import threading
import traceback
from typing import Optional

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

BEHAVIOURS = ("servfail", "timeout")
DEFAULT_TTL = 300
DEFAULT_SOA = {"ttl": 3600, "minimum": 300}
MAX_CNAME_CHAIN = 8
UDP_SIZE = 512  # RFC 1035 4.2.1, without EDNS


def _key(name) -> str:
    """A name's lookup key: lower case, no final dot."""
    return str(name).rstrip(".").lower()


def _txt(value: str) -> str:
    if value.startswith('"'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rrsets(name: str, spec: dict) -> dict:
    """{rdtype: RRset} for one served name; raises ValueError on bad data."""
    ttl = int(spec.get("ttl", DEFAULT_TTL))
    out = {}
    for rtype, values in spec.items():
        if rtype == "ttl":
            continue
        if isinstance(values, str):
            values = [values]
        rdtype = dns.rdatatype.from_text(rtype)
        if rdtype == dns.rdatatype.TXT:
            values = [_txt(v) for v in values]
        try:
            out[rdtype] = dns.rrset.from_text_list(
                dns.name.from_text(name), ttl, dns.rdataclass.IN, rdtype, values,
                origin=dns.name.root, relativize=False)
        except dns.exception.DNSException as e:
            raise ValueError(f"{name} {rtype} {values!r}: {e}") from e
    return out


class DNSServer:
    """Serves `names` (see the module's docstring) on host:port, UDP and TCP."""

    def __init__(self, names: Optional[dict] = None, zones: Optional[dict] = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.names = {}
        for name, spec in (names or {}).items():
            if isinstance(spec, str):
                if spec not in BEHAVIOURS:
                    raise ValueError(f"{name}: {spec!r} is not one of {BEHAVIOURS} or a dict")
                self.names[_key(name)] = spec
            else:
                self.names[_key(name)] = _rrsets(_key(name) + ".", spec)
        self.zones = {_key(z): {**DEFAULT_SOA, **(v or {})} for z, v in (zones or {}).items()}
        self.host = host
        self.queries: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list = []
        self.udp, self.tcp = self._bind(host, port)
        self.port = self.udp.getsockname()[1]
        for target in (self._serve_udp, self._serve_tcp):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    # -- lifecycle

    @staticmethod
    def _bind(host: str, port: int):
        """A UDP and a TCP socket on the same port (any free one for 0)."""
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((host, port))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((host, udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                if port:
                    raise
                continue
            tcp.listen(16)
            udp.settimeout(0.2)
            tcp.settimeout(0.2)
            return udp, tcp
        raise OSError(f"no port on {host} free for both UDP and TCP")

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def relay_sets(self) -> list:
        """The --set arguments that point ringrelay's resolver here."""
        return [f'dns.servers=["{self.address}"]']

    # -- answers

    def _soa(self, name: str) -> dns.rrset.RRset:
        zone = max((z for z in self.zones if name == z or name.endswith("." + z)),
                   key=len, default=None)
        params = self.zones.get(zone, DEFAULT_SOA)
        if zone is None:
            zone = ".".join(name.split(".")[-2:])
        origin = f"{zone}." if zone else "."
        return dns.rrset.from_text(
            origin, params["ttl"], "IN", "SOA",
            f"ns.{origin} hostmaster.{origin} 1 7200 900 1209600 {params['minimum']}")

    def answer(self, query: dns.message.Message, transport: str) -> Optional[dns.message.Message]:
        """The response to `query`, or None when it must go unanswered."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name, rdtype = _key(question.name), question.rdtype
        with self._lock:
            self.queries.append((name, dns.rdatatype.to_text(rdtype), transport))
        if rdtype == dns.rdatatype.SOA and name in self.zones:
            response.answer.append(self._soa(name))
            return response
        current = name
        for _ in range(MAX_CNAME_CHAIN + 1):
            served = self.names.get(current)
            if served == "timeout":
                return None
            if served == "servfail":
                response.answer.clear()
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            if served is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._soa(current))
                return response
            if rdtype in served:
                response.answer.append(served[rdtype])
                return response
            cname = served.get(dns.rdatatype.CNAME)
            if cname is None:
                response.authority.append(self._soa(current))
                return response
            response.answer.append(cname)
            current = _key(cname[0].target)
        response.set_rcode(dns.rcode.SERVFAIL)  # a CNAME chain too long to follow
        return response

    def _answer_or_report(self, query: dns.message.Message,
                          transport: str) -> Optional[dns.message.Message]:
        """`answer`, with a bug in it printed (the test's output shows it)
        instead of ending the serving thread; the query then goes unanswered."""
        try:
            return self.answer(query, transport)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return None

    def _wire(self, query: dns.message.Message, response: dns.message.Message,
              limit: int) -> bytes:
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def _serve_udp(self):
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            response = self._answer_or_report(query, "udp")
            if response is None:
                continue
            limit = max(UDP_SIZE, query.payload) if query.edns >= 0 else UDP_SIZE
            try:
                self.udp.sendto(self._wire(query, response, limit), peer)
            except OSError:
                continue

    def _serve_tcp(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            t = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True)
            t.start()

    def _read_exactly(self, conn: socket.socket, n: int) -> Optional[bytes]:
        data = b""
        while len(data) < n and not self._stop.is_set():
            try:
                chunk = conn.recv(n - len(data))
            except socket.timeout:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data if len(data) == n else None

    def _serve_connection(self, conn: socket.socket):
        """RFC 1035 4.2.2: each message behind a two-octet length."""
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                head = self._read_exactly(conn, 2)
                body = head and self._read_exactly(conn, struct.unpack("!H", head)[0])
                if not body:
                    return
                try:
                    query = dns.message.from_wire(body)
                except dns.exception.DNSException:
                    return
                response = self._answer_or_report(query, "tcp")
                if response is None:
                    continue
                wire = self._wire(query, response, 65535)
                try:
                    conn.sendall(struct.pack("!H", len(wire)) + wire)
                except OSError:
                    return


def main() -> int:
    ap = argparse.ArgumentParser(description="Serve test DNS zones (see the module docstring).")
    ap.add_argument("zones", help='JSON file: {"names": {...}, "zones": {...}} or just the names')
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5353)
    args = ap.parse_args()
    with open(args.zones) as f:
        spec = json.load(f)
    if "names" not in spec:
        spec = {"names": spec}
    with DNSServer(spec["names"], spec.get("zones"), args.host, args.port) as server:
        print(f"serving on {server.address} (UDP and TCP); Ctrl-C stops", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
