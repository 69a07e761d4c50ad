//! The small part of memcached's text protocol the limiter speaks: `gets`, `add`, `cas`,
//! `delete` and `version`, written into a buffer and parsed back from the bytes received.
//!
//! The classic text commands (rather than the 1.6 meta commands `mg`/`ms`) are used because
//! every memcached release and every memcached-speaking proxy (mcrouter, twemproxy, managed
//! services) accepts them, and they carry everything a compare-and-swap needs: `gets` returns
//! the value with its CAS token, `cas` stores only if the token still matches, `add` stores only
//! if the key is absent. The meta commands would save a few bytes per request and nothing else.
//!
//! Parsing never trusts the server: every reply is checked byte for byte and anything
//! unexpected is a [`ReplyError`], never a panic. Parsers are incremental: they return
//! `Ok(None)` until a whole reply has arrived, and otherwise the reply and how many bytes it
//! took, so pipelined replies are read one after another from one buffer.

use std::fmt;

/// The flags stored with every limiter state. A value with other flags was not written by this
/// crate. 16 bits, so that servers older than 1.4.22 (which kept 16-bit flags) store it as is.
pub(crate) const FLAGS: u32 = 0x7472; // "tr"

/// A state is one little-endian `u64`.
pub(crate) const STATE_LEN: usize = 8;

/// The longest reply line accepted. A `VALUE` line for a 250-byte key is under 300 bytes;
/// anything longer without a line end is not a memcached reply.
const MAX_LINE: usize = 2048;

/// The largest value size accepted in a `VALUE` line (memcached's default item size limit).
/// Larger claims are refused before buffering them.
const MAX_VALUE: usize = 1 << 20;

/// What a `gets` of one key returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// The key does not exist (never written, expired, deleted or evicted).
    Miss,
    /// The key exists.
    Hit {
        /// The flags stored with it.
        flags: u32,
        /// Its CAS token.
        cas: u64,
        /// Its value, if it was [`STATE_LEN`] bytes long; otherwise its length.
        value: Value,
    },
}

/// A stored value, read as a limiter state when it has the right length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// Eight bytes, read as a little-endian `u64`.
    State(u64),
    /// A value of another length (not a limiter state).
    Other {
        /// Its length in bytes.
        len: usize,
    },
}

/// The answer to `add` or `cas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// Written.
    Stored,
    /// `add`: the key already exists.
    NotStored,
    /// `cas`: the key changed since its `gets`.
    Exists,
    /// `cas`: the key vanished since its `gets` (expired, deleted, evicted).
    NotFound,
}

/// The answer to `delete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delete {
    /// The key was there and is gone.
    Deleted,
    /// The key was not there.
    NotFound,
}

/// Which of memcached's three error replies came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerErrorKind {
    /// `ERROR`: the server does not know the command.
    Error,
    /// `CLIENT_ERROR <message>`: the server refused the request as malformed.
    Client,
    /// `SERVER_ERROR <message>`: the server could not carry out the request (out of memory, ...).
    Server,
}

/// A reply that is not the one asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReplyError {
    /// One of memcached's error replies.
    Server {
        /// Which one.
        kind: ServerErrorKind,
        /// The message after the keyword (empty for `ERROR`).
        message: String,
    },
    /// Bytes that are not a memcached reply to the request.
    Malformed(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Server { kind, message } => {
                let word = match kind {
                    ServerErrorKind::Error => "ERROR",
                    ServerErrorKind::Client => "CLIENT_ERROR",
                    ServerErrorKind::Server => "SERVER_ERROR",
                };
                if message.is_empty() {
                    f.write_str(word)
                } else {
                    write!(f, "{word} {message}")
                }
            }
            ReplyError::Malformed(why) => f.write_str(why),
        }
    }
}

/// A parse result: `None` while the reply is incomplete, else the reply and its length.
pub(crate) type Parsed<T> = Result<Option<(T, usize)>, ReplyError>;

/// Appends `gets <key>\r\n`.
pub(crate) fn push_gets(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"gets ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// Appends `add <key> <flags> <exptime> 8\r\n<state>\r\n`: stores only if the key is absent.
pub(crate) fn push_add(out: &mut Vec<u8>, key: &[u8], exptime: u32, state: u64) {
    push_storage(out, b"add ", key, exptime, state, None);
}

/// Appends `cas <key> <flags> <exptime> 8 <cas>\r\n<state>\r\n`: stores only if the key's CAS
/// token is still `cas`.
pub(crate) fn push_cas(out: &mut Vec<u8>, key: &[u8], exptime: u32, state: u64, cas: u64) {
    push_storage(out, b"cas ", key, exptime, state, Some(cas));
}

fn push_storage(
    out: &mut Vec<u8>,
    command: &[u8],
    key: &[u8],
    exptime: u32,
    state: u64,
    cas: Option<u64>,
) {
    push_value(out, command, key, FLAGS, exptime, &state.to_le_bytes(), cas);
}

/// Appends `<command> <key> <flags> <exptime> <len>[ <cas>]\r\n<value>\r\n`: a storage command
/// for a value of any length (the shaper's queues).
pub(crate) fn push_value(
    out: &mut Vec<u8>,
    command: &[u8],
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    cas: Option<u64>,
) {
    out.extend_from_slice(command);
    out.extend_from_slice(key);
    let len = value.len();
    let header = match cas {
        Some(cas) => format!(" {flags} {exptime} {len} {cas}\r\n"),
        None => format!(" {flags} {exptime} {len}\r\n"),
    };
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `delete <key>\r\n`.
pub(crate) fn push_delete(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"delete ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// The `version` request.
pub(crate) const VERSION: &[u8] = b"version\r\n";

/// Parses the reply to `gets <key>`: `END`, or one `VALUE` block followed by `END`.
pub(crate) fn parse_get(buf: &[u8], key: &[u8]) -> Parsed<Item> {
    Ok(parse_gets_value(buf, key)?.map(|(found, used)| {
        let item = match found {
            None => Item::Miss,
            Some((flags, cas, data)) => {
                let value = match <[u8; STATE_LEN]>::try_from(data) {
                    Ok(bytes) => Value::State(u64::from_le_bytes(bytes)),
                    Err(_) => Value::Other { len: data.len() },
                };
                Item::Hit { flags, cas, value }
            }
        };
        (item, used)
    }))
}

/// What a `gets` of one key found, with the value's bytes: `None` for a miss, else its flags,
/// CAS token and value.
pub(crate) type RawItem = Option<(u32, u64, Vec<u8>)>;

/// Parses the reply to `gets <key>` keeping the value's bytes whatever their length.
pub(crate) fn parse_get_raw(buf: &[u8], key: &[u8]) -> Parsed<RawItem> {
    Ok(parse_gets_value(buf, key)?
        .map(|(found, used)| (found.map(|(f, c, d)| (f, c, d.to_vec())), used)))
}

/// The `gets` reply parser both forms share: the value borrowed from `buf`.
#[allow(clippy::type_complexity)]
fn parse_gets_value<'a>(buf: &'a [u8], key: &[u8]) -> Parsed<Option<(u32, u64, &'a [u8])>> {
    let Some((first, mut used)) = line(buf)? else {
        return Ok(None);
    };
    if first == b"END" {
        return Ok(Some((None, used)));
    }
    server_error(first)?;
    let Some(rest) = first.strip_prefix(b"VALUE ") else {
        return Err(unexpected("gets", first));
    };
    let mut fields = rest.split(|&b| b == b' ');
    let (Some(got_key), Some(flags), Some(len), Some(cas), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ReplyError::Malformed(format!(
            "a VALUE line must be `VALUE <key> <flags> <bytes> <cas>`, got {}",
            show(first)
        )));
    };
    if got_key != key {
        return Err(ReplyError::Malformed(format!(
            "asked for key {} but the reply is for key {}",
            show(key),
            show(got_key)
        )));
    }
    let flags = number(flags, "flags")?;
    let flags = u32::try_from(flags)
        .map_err(|_| ReplyError::Malformed(format!("flags {flags} do not fit in 32 bits")))?;
    let len = number(len, "value length")?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_VALUE)
        .ok_or_else(|| {
            ReplyError::Malformed(format!(
                "value length {len} is above memcached's {MAX_VALUE}-byte item limit"
            ))
        })?;
    let cas = number(cas, "cas token")?;
    // The data block, then its line end.
    let data_end = used + len;
    if buf.len() < data_end + 2 {
        return Ok(None);
    }
    if &buf[data_end..data_end + 2] != b"\r\n" {
        return Err(ReplyError::Malformed(format!(
            "the {len}-byte value is not followed by CRLF"
        )));
    }
    let value = &buf[used..data_end];
    used = data_end + 2;
    let Some((end, end_used)) = line(&buf[used..])? else {
        return Ok(None);
    };
    if end != b"END" {
        return Err(ReplyError::Malformed(format!(
            "expected END after the one value asked for, got {}",
            show(end)
        )));
    }
    Ok(Some((Some((flags, cas, value)), used + end_used)))
}

/// Parses the reply to `add` or `cas`.
pub(crate) fn parse_store(buf: &[u8]) -> Parsed<Store> {
    let Some((line, used)) = line(buf)? else {
        return Ok(None);
    };
    let reply = match line {
        b"STORED" => Store::Stored,
        b"NOT_STORED" => Store::NotStored,
        b"EXISTS" => Store::Exists,
        b"NOT_FOUND" => Store::NotFound,
        other => {
            server_error(other)?;
            return Err(unexpected("a storage command", other));
        }
    };
    Ok(Some((reply, used)))
}

/// Parses the reply to `delete`.
pub(crate) fn parse_delete(buf: &[u8]) -> Parsed<Delete> {
    let Some((line, used)) = line(buf)? else {
        return Ok(None);
    };
    let reply = match line {
        b"DELETED" => Delete::Deleted,
        b"NOT_FOUND" => Delete::NotFound,
        other => {
            server_error(other)?;
            return Err(unexpected("delete", other));
        }
    };
    Ok(Some((reply, used)))
}

/// Parses the reply to `version`: the version text.
pub(crate) fn parse_version(buf: &[u8]) -> Parsed<String> {
    let Some((line, used)) = line(buf)? else {
        return Ok(None);
    };
    server_error(line)?;
    match line.strip_prefix(b"VERSION ") {
        Some(v) if !v.is_empty() && v.iter().all(u8::is_ascii_graphic) => {
            Ok(Some((String::from_utf8_lossy(v).into_owned(), used)))
        }
        _ => Err(unexpected("version", line)),
    }
}

/// The first line of `buf` without its CRLF, and the bytes it took with the CRLF.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ReplyError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > MAX_LINE => Err(too_long()),
        Some(lf) => {
            if lf == 0 || buf[lf - 1] != b'\r' {
                return Err(ReplyError::Malformed(format!(
                    "a reply line ends in a bare LF: {}",
                    show(&buf[..lf])
                )));
            }
            Ok(Some((&buf[..lf - 1], lf + 1)))
        }
        None if buf.len() > MAX_LINE => Err(too_long()),
        None => Ok(None),
    }
}

fn too_long() -> ReplyError {
    ReplyError::Malformed(format!("a reply line is longer than {MAX_LINE} bytes"))
}

/// `Err` if `line` is one of memcached's error replies.
fn server_error(line: &[u8]) -> Result<(), ReplyError> {
    let (kind, message) = if line == b"ERROR" {
        (ServerErrorKind::Error, &b""[..])
    } else if let Some(m) = strip_word(line, b"CLIENT_ERROR") {
        (ServerErrorKind::Client, m)
    } else if let Some(m) = strip_word(line, b"SERVER_ERROR") {
        (ServerErrorKind::Server, m)
    } else {
        return Ok(());
    };
    Err(ReplyError::Server {
        kind,
        message: String::from_utf8_lossy(message).into_owned(),
    })
}

/// `line` without `word` and the space after it, if it starts with that word.
fn strip_word<'a>(line: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(word)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(b" ")
    }
}

/// A decimal `u64`: digits only, no sign, no overflow.
fn number(field: &[u8], what: &str) -> Result<u64, ReplyError> {
    let bad = || ReplyError::Malformed(format!("{what} is not a decimal number: {}", show(field)));
    if field.is_empty() {
        return Err(bad());
    }
    field.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(bad());
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)
    })
}

fn unexpected(to: &str, line: &[u8]) -> ReplyError {
    ReplyError::Malformed(format!("unexpected reply to {to}: {}", show(line)))
}

/// Up to 64 bytes, escaped, for error messages.
fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(64)];
    let more = if bytes.len() > 64 { "..." } else { "" };
    format!("\"{}{more}\"", cut.escape_ascii())
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
