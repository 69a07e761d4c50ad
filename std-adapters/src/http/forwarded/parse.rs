//! Reading forwarding headers from the right: the hops our own proxies appended come first, and
//! nothing a client wrote to their left can change how they parse. (A malformed `Forwarded`
//! element is the exception: an unclosed quote is read leftwards until it finds an opening
//! one, so what it reads as depends on the bytes before it. The walk stops there anyway, and
//! only reaches it past trusted hops, where a trusted proxy should have appended a valid one.)
//!
//! Both readers work on bytes (header values need not be UTF-8), never index out of bounds,
//! and take time linear in the line's length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Hop;

/// Optional whitespace (RFC 9110 OWS).
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 `tchar`: the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The characters of an unquoted `Forwarded` value. Tokens per RFC 7239, plus `:`, `[` and
/// `]`: some proxies leave `for=[2001:db8::1]` unquoted, and none of the three is a delimiter
/// of the grammar, so accepting them cannot change where a hop begins or ends.
fn is_value_char(b: u8) -> bool {
    is_tchar(b) || b == b':' || b == b'[' || b == b']'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// RFC 7239 `node-port`: up to five digits, or an obfuscated port (`_` then obfuscation
/// characters).
fn is_port(p: &[u8]) -> bool {
    (!p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit)) || is_obfuscated(p)
}

/// RFC 7239 `obfnode` / `obfport`: `_` followed by ALPHA / DIGIT / `.` / `_` / `-`.
fn is_obfuscated(s: &[u8]) -> bool {
    match s {
        [b'_', rest @ ..] if !rest.is_empty() => rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
        _ => false,
    }
}

fn parse_ip<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// One node (`Forwarded` `for=` value, unquoted, or an `X-Forwarded-For` item): an IPv4
/// address, `[IPv6]`, either with a `:port`, a bare IPv6 address (the usual form in
/// `X-Forwarded-For`), `unknown`, or an obfuscated identifier.
pub(super) fn parse_node(s: &[u8]) -> Hop {
    if let Some(rest) = s.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return Hop::Malformed;
        };
        let (inside, after) = (&rest[..close], &rest[close + 1..]);
        let port_ok = match after {
            [] => true,
            [b':', port @ ..] => is_port(port),
            _ => false,
        };
        return match parse_ip::<Ipv6Addr>(inside) {
            Some(a) if port_ok => Hop::Addr(IpAddr::V6(a).to_canonical()),
            _ => Hop::Malformed,
        };
    }
    // An unbracketed IPv6 address has at least two colons; it is taken whole (`::1:80` is the
    // address ::1:80, not ::1 port 80: without brackets a port cannot be told apart).
    if s.iter().filter(|&&b| b == b':').count() >= 2 {
        return match parse_ip::<Ipv6Addr>(s) {
            Some(a) => Hop::Addr(IpAddr::V6(a).to_canonical()),
            None => Hop::Malformed,
        };
    }
    let (name, port_ok) = match s.iter().position(|&b| b == b':') {
        Some(colon) => (&s[..colon], is_port(&s[colon + 1..])),
        None => (s, true),
    };
    if !port_ok {
        return Hop::Malformed;
    }
    if name.eq_ignore_ascii_case(b"unknown") {
        return Hop::Unknown;
    }
    if is_obfuscated(name) {
        return Hop::Obfuscated;
    }
    match parse_ip::<Ipv4Addr>(name) {
        Some(a) => Hop::Addr(IpAddr::V4(a)),
        None => Hop::Malformed,
    }
}

/// The items of one comma-separated line (`X-Forwarded-For`, `X-Real-IP`, custom headers),
/// right to left; empty items are skipped (RFC 9110 §5.6.1).
pub(super) struct ListLine<'a> {
    s: &'a [u8],
}

impl<'a> ListLine<'a> {
    pub(super) fn new(s: &'a [u8]) -> Self {
        ListLine { s }
    }

    pub(super) fn next_hop(&mut self) -> Option<Hop> {
        loop {
            if self.s.is_empty() {
                return None;
            }
            let (item, rest) = match self.s.iter().rposition(|&b| b == b',') {
                Some(comma) => (&self.s[comma + 1..], &self.s[..comma]),
                None => (self.s, &self.s[..0]),
            };
            self.s = rest;
            let item = trim_ows(item);
            if !item.is_empty() {
                return Some(parse_node(item));
            }
        }
    }
}

/// The elements of one RFC 7239 `Forwarded` line, right to left, each reduced to its `for=`
/// node. Parsing from the right means an unbalanced quote or other junk a client put at the
/// start of the line cannot swallow the elements proxies appended after it.
pub(super) struct ForwardedLine<'a> {
    s: &'a [u8],
    /// Everything before this index is still to be read.
    end: usize,
}

/// Longest `for=` value worth unescaping: `"[ffff:…:255.255.255.255]:65535"` is 53 bytes.
/// Longer values are not an address (an over-long obfuscated name reads as malformed).
const MAX_NODE: usize = 64;

impl<'a> ForwardedLine<'a> {
    pub(super) fn new(s: &'a [u8]) -> Self {
        ForwardedLine { s, end: s.len() }
    }

    /// The next element's hop, or `None` at the start of the line. After a malformed element
    /// the line cannot be resynchronised, so it reads as finished.
    pub(super) fn next_hop(&mut self) -> Option<Hop> {
        let s = self.s;
        let mut i = self.end;
        // Empty list elements and the whitespace around commas.
        while i > 0 && (is_ows(s[i - 1]) || s[i - 1] == b',') {
            i -= 1;
        }
        if i == 0 {
            self.end = 0;
            return None;
        }
        match element_rev(s, i) {
            Some((start, hop)) => {
                self.end = start;
                Some(hop)
            }
            None => {
                self.end = 0;
                Some(Hop::Malformed)
            }
        }
    }
}

/// Reads the element ending at `end` (exclusive; `s[end - 1]` is not whitespace or a comma)
/// backwards: `pair *( OWS ";" OWS pair )`, `pair = token "=" ( token / quoted-string )`.
/// Returns where it starts (just after the comma before it, or 0) and its `for=` node
/// ([`Hop::Unknown`] if it has none), or `None` if it breaks the grammar.
fn element_rev(s: &[u8], end: usize) -> Option<(usize, Hop)> {
    let mut i = end;
    let mut node: Option<Hop> = None;
    loop {
        // The value: a quoted string or a run of value characters.
        let mut unquoted = [0u8; MAX_NODE];
        let value: Option<&[u8]>; // None: too long to be a node
        if i > 0 && s[i - 1] == b'"' {
            let close = i - 1;
            let open = opening_quote(s, close)?;
            value = unescape(&s[open + 1..close], &mut unquoted);
            i = open;
        } else {
            let start = s[..i]
                .iter()
                .rposition(|&b| !is_value_char(b))
                .map_or(0, |p| p + 1);
            if start == i {
                return None;
            }
            value = Some(&s[start..i]);
            i = start;
        }
        // "=" with no whitespace around it, then the parameter name.
        if i == 0 || s[i - 1] != b'=' {
            return None;
        }
        i -= 1;
        let start = s[..i]
            .iter()
            .rposition(|&b| !is_tchar(b))
            .map_or(0, |p| p + 1);
        if start == i {
            return None;
        }
        if s[start..i].eq_ignore_ascii_case(b"for") {
            // RFC 7239 §4: a parameter must not occur twice in one element; which one would
            // be the client is anyone's guess.
            if node.is_some() {
                return None;
            }
            node = Some(value.map_or(Hop::Malformed, parse_node));
        }
        i = start;
        while i > 0 && is_ows(s[i - 1]) {
            i -= 1;
        }
        if i == 0 || s[i - 1] == b',' {
            return Some((i, node.unwrap_or(Hop::Unknown)));
        }
        if s[i - 1] != b';' {
            return None;
        }
        i -= 1;
        while i > 0 && is_ows(s[i - 1]) {
            i -= 1;
        }
        if i == 0 {
            return None;
        }
    }
}

/// The index of the quote opening the quoted string that closes at `close`: the nearest
/// quote to its left not escaped by an odd run of backslashes.
fn opening_quote(s: &[u8], close: usize) -> Option<usize> {
    let mut j = close;
    while j > 0 {
        j -= 1;
        if s[j] == b'"' {
            let backslashes = s[..j].iter().rev().take_while(|&&b| b == b'\\').count();
            if backslashes % 2 == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// The content of a quoted string with its quoted-pairs (`\x`) undone, into `buf`; `None` if
/// it does not fit.
fn unescape<'b>(content: &[u8], buf: &'b mut [u8; MAX_NODE]) -> Option<&'b [u8]> {
    let mut n = 0;
    let mut bytes = content.iter();
    while let Some(&b) = bytes.next() {
        let b = if b == b'\\' {
            // A trailing lone backslash cannot occur (the closing quote would be escaped);
            // keep it rather than assume.
            bytes.next().copied().unwrap_or(b'\\')
        } else {
            b
        };
        *buf.get_mut(n)? = b;
        n += 1;
    }
    Some(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Hop {
        Hop::Addr(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    fn v6(s: &str) -> Hop {
        Hop::Addr(IpAddr::V6(s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED)))
    }

    fn forwarded(s: &str) -> Vec<Hop> {
        let mut line = ForwardedLine::new(s.as_bytes());
        std::iter::from_fn(|| line.next_hop()).collect()
    }

    fn list(s: &[u8]) -> Vec<Hop> {
        let mut line = ListLine::new(s);
        std::iter::from_fn(|| line.next_hop()).collect()
    }

    #[test]
    fn nodes() {
        assert_eq!(parse_node(b"1.2.3.4"), v4(1, 2, 3, 4));
        assert_eq!(parse_node(b"1.2.3.4:8080"), v4(1, 2, 3, 4));
        assert_eq!(parse_node(b"1.2.3.4:_p"), v4(1, 2, 3, 4));
        assert_eq!(parse_node(b"[2001:db8::1]"), v6("2001:db8::1"));
        assert_eq!(parse_node(b"[2001:db8::1]:443"), v6("2001:db8::1"));
        assert_eq!(parse_node(b"2001:db8::1"), v6("2001:db8::1"));
        assert_eq!(parse_node(b"[::ffff:1.2.3.4]"), v4(1, 2, 3, 4));
        assert_eq!(parse_node(b"::ffff:1.2.3.4"), v4(1, 2, 3, 4));
        assert_eq!(parse_node(b"unknown"), Hop::Unknown);
        assert_eq!(parse_node(b"UNKNOWN:80"), Hop::Unknown);
        assert_eq!(parse_node(b"_hidden-1.x"), Hop::Obfuscated);
        assert_eq!(parse_node(b"_hidden:_p"), Hop::Obfuscated);
        for bad in [
            &b""[..],
            b"_",
            b"1.2.3.4:",
            b"1.2.3.4:123456",
            b"1.2.3.4:8a",
            b"1.2.3",
            b"01.2.3.4",
            b"[2001:db8::1",
            b"[2001:db8::1]443",
            b"[1.2.3.4]",
            b"fe80::1%eth0",
            b"example.com",
            b"\xff\xfe",
            b"1.2.3.4 ",
        ] {
            assert_eq!(parse_node(bad), Hop::Malformed, "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn list_lines_right_to_left() {
        assert_eq!(
            list(b" 1.2.3.4 ,, 5.6.7.8,\t2001:db8::2 ,"),
            vec![v6("2001:db8::2"), v4(5, 6, 7, 8), v4(1, 2, 3, 4)]
        );
        assert_eq!(list(b""), vec![]);
        assert_eq!(list(b" , ,"), vec![]);
        assert_eq!(
            list(b"\"1.2.3.4\", 5.6.7.8"),
            vec![v4(5, 6, 7, 8), Hop::Malformed]
        );
    }

    #[test]
    fn forwarded_elements_right_to_left() {
        assert_eq!(
            forwarded("for=192.0.2.60;proto=http;by=203.0.113.43"),
            vec![v4(192, 0, 2, 60)]
        );
        assert_eq!(
            forwarded(r#"for="_gazonk", For="[2001:db8:cafe::17]:4711""#),
            vec![v6("2001:db8:cafe::17"), Hop::Obfuscated]
        );
        assert_eq!(
            forwarded(
                r#"for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com"#
            ),
            vec![v4(198, 51, 100, 17), v4(192, 0, 2, 43)]
        );
        assert_eq!(
            forwarded(r#"for="1.2.3.4:80" ; proto=https"#),
            vec![v4(1, 2, 3, 4)]
        );
        assert_eq!(forwarded("for=unknown"), vec![Hop::Unknown]);
        assert_eq!(forwarded("proto=https"), vec![Hop::Unknown]);
        assert_eq!(forwarded("for=[::1]"), vec![v6("::1")]);
        // Quoted commas and escaped quotes stay inside their string.
        assert_eq!(
            forwarded(r#"for=1.1.1.1;x="a,\"b\\", for=2.2.2.2"#),
            vec![v4(2, 2, 2, 2), v4(1, 1, 1, 1)]
        );
        // Escapes inside the node are undone.
        assert_eq!(forwarded(r#"for="\1.2.3.4""#), vec![v4(1, 2, 3, 4)]);
    }

    #[test]
    fn forwarded_garbage_stops_the_line_but_not_what_follows_it() {
        // An unbalanced quote on the left cannot swallow the proxy's element.
        assert_eq!(
            forwarded(r#"for="1.1.1.1, for=2.2.2.2"#),
            vec![v4(2, 2, 2, 2), Hop::Malformed]
        );
        assert_eq!(
            forwarded(r#"for="x, for="[2001:db8::1]:80""#),
            vec![v6("2001:db8::1"), Hop::Malformed]
        );
        for bad in [
            "for=1.2.3.4;",
            "for= 1.2.3.4",
            "for =1.2.3.4",
            "=1.2.3.4",
            "for=",
            "for=1.2.3.4;for=5.6.7.8",
            "for=1.2.3.4 proto=http",
            "\"",
            "for=\"1.2.3.4",
            ";for=1.2.3.4",
        ] {
            assert_eq!(forwarded(bad), vec![Hop::Malformed], "{bad}");
        }
        // A malformed element is read from its right end as far left as it takes (here an
        // unclosed quote looking for its opening one), so bytes to its left change what it
        // reads as; elements to its right never change.
        assert_eq!(forwarded(r#"for=1.1.1.1, ]=80""#), vec![Hop::Malformed]);
        assert_eq!(
            forwarded(r#"for=11.0.0.3;a=",]=80""#),
            vec![v4(11, 0, 0, 3)]
        );
        assert_eq!(
            forwarded(r#"for=11.0.0.3;a=",]=80", for=2.2.2.2"#),
            vec![v4(2, 2, 2, 2), v4(11, 0, 0, 3)]
        );
        let long = format!("for=\"_{}\"", "a".repeat(100));
        assert_eq!(forwarded(&long), vec![Hop::Malformed]);
        assert_eq!(forwarded(" ,, "), vec![]);
    }
}
