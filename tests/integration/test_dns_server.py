"""The integration tests' DNS server (dns_server.py) checked with dnspython's
own client, over UDP and TCP: records (MX, null MX, A, AAAA, TXT, CNAME
chains), NODATA and NXDOMAIN with the zone's SOA, SERVFAIL, silence, and
truncation of a large UDP answer; then ringrelay started with the server as
its resolver (`dns.servers`), so the key the tests will pass is accepted."""
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

import harness as h
from dns_server import DNSServer

NAMES = {
    "sender.example": {"MX": ["10 mx.sender.example.", "20 mx2.sender.example"],
                       "TXT": ["v=spf1 include:_spf.relay.example -all"], "ttl": 600},
    "mx.sender.example": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    "nomail.example": {"MX": ["0 ."]},
    "alias.example": {"CNAME": "hop.example."},
    "hop.example": {"CNAME": "mx.sender.example"},
    "dangling.example": {"CNAME": "gone.example"},
    "many.example": {"A": [f"192.0.2.{i}" for i in range(1, 61)]},
    "broken.example": "servfail",
    "slow.example": "timeout",
}
ZONES = {"example": {"ttl": 3600, "minimum": 120}}


def ask(srv: DNSServer, name: str, rtype: str, tcp: bool = False, timeout: float = 2.0):
    q = dns.message.make_query(name, rtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(q, srv.host, port=srv.port, timeout=timeout)


def rdata_texts(response, rtype: str) -> list:
    """The answer's data of one type, in lower case: name compression may
    borrow the question's spelling (DNS names have no case)."""
    rdtype = dns.rdatatype.from_text(rtype)
    return sorted(rd.to_text().lower() for rrset in response.answer if rrset.rdtype == rdtype
                  for rd in rrset)


def soa_minimum(response) -> int:
    soa = [rrset for rrset in response.authority if rrset.rdtype == dns.rdatatype.SOA]
    assert len(soa) == 1, response.to_text()
    return soa[0][0].minimum


@h.timeout(60)
def test_dns_server_answers_each_behaviour():
    with DNSServer(NAMES, ZONES) as srv:
        for tcp in (False, True):
            via = "tcp" if tcp else "udp"
            r = ask(srv, "Sender.Example.", "MX", tcp)
            assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA, r.to_text()
            assert rdata_texts(r, "MX") == ["10 mx.sender.example.", "20 mx2.sender.example."], via
            assert r.answer[0].ttl == 600
            assert rdata_texts(ask(srv, "nomail.example", "MX", tcp), "MX") == ["0 ."], via
            assert rdata_texts(ask(srv, "mx.sender.example", "A", tcp), "A") == ["127.0.0.1"]
            assert rdata_texts(ask(srv, "mx.sender.example", "AAAA", tcp), "AAAA") == ["::1"]
            assert rdata_texts(ask(srv, "sender.example", "TXT", tcp), "TXT") == [
                '"v=spf1 include:_spf.relay.example -all"']

            # CNAME chains are followed, as a recursive resolver does.
            r = ask(srv, "alias.example", "A", tcp)
            assert rdata_texts(r, "CNAME") == ["hop.example.", "mx.sender.example."], r.to_text()
            assert rdata_texts(r, "A") == ["127.0.0.1"]
            r = ask(srv, "dangling.example", "A", tcp)
            assert r.rcode() == dns.rcode.NXDOMAIN and rdata_texts(r, "CNAME") == ["gone.example."]

            r = ask(srv, "mx.sender.example", "MX", tcp)
            assert r.rcode() == dns.rcode.NOERROR and not r.answer, r.to_text()
            assert soa_minimum(r) == 120
            r = ask(srv, "unregistered.example", "MX", tcp)
            assert r.rcode() == dns.rcode.NXDOMAIN, r.to_text()
            assert soa_minimum(r) == 120
            r = ask(srv, "other.test", "A", tcp)
            assert r.rcode() == dns.rcode.NXDOMAIN and soa_minimum(r) == 300, r.to_text()

            assert ask(srv, "broken.example", "MX", tcp).rcode() == dns.rcode.SERVFAIL
            try:
                ask(srv, "slow.example", "MX", tcp, timeout=0.5)
            except dns.exception.Timeout:
                pass
            else:
                raise AssertionError(f"slow.example was answered over {via}")

        # 60 A records do not fit in 512 octets: truncated over UDP, whole
        # over TCP.
        r = ask(srv, "many.example", "A")
        assert r.flags & dns.flags.TC and not r.answer, r.to_text()
        assert len(rdata_texts(ask(srv, "many.example", "A", tcp=True), "A")) == 60

        assert ("broken.example", "MX", "udp") in srv.queries
        assert ("slow.example", "MX", "tcp") in srv.queries


@h.timeout(60)
def test_dns_server_settings_load_in_the_relay():
    with DNSServer(NAMES, ZONES) as srv, h.RecordingSink() as sink, \
            h.Relay(sink, sets=srv.relay_sets()) as relay:
        assert srv.relay_sets() == [f'dns.servers=["127.0.0.1:{srv.port}"]']
        with relay.client() as c:
            assert c.cmd("QUIT").code == 221
