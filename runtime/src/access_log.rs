//! The access log: one `weir::access` record per request, with Amazon API Gateway's
//! `$context` names, and the fields an operator chose in `[access_log]`.
//!
//! Records are written in the shape of the `tracing` log lines around them (the same
//! text or JSON, on stderr) but are formatted here, straight into a buffer: going
//! through `tracing`'s field visitors and formatter, and a `write` per line, cost about
//! a tenth of the bare proxy's throughput. A worker thread collects its records and
//! writes them all at once whenever it runs out of work ([`flush`], from the runtime's
//! park hook) or has 64 KiB; other threads write each record at once. `RUST_LOG`
//! (`weir::access=off`) still turns the log off.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::context::{EventType, RequestContext};

/// Every field the access log can carry, in output order.
pub const FIELDS: [&str; 21] = [
    "requestId",
    "requestTime",
    "httpMethod",
    "path",
    "routeKey",
    "status",
    "responseLength",
    "responseLatency",
    "integrationLatency",
    "integrationStatus",
    "integrationError",
    "authorizer.principalId",
    "authorizer.error",
    "sourceIp",
    "userAgent",
    "protocol",
    "traceId",
    "connectionId",
    "eventType",
    "identity.clientCert.subjectDN",
    "identity.clientCert.serialNumber",
];

/// Which fields are written (a bit per entry of [`FIELDS`]); `None` disables the log.
#[derive(Debug, Clone, Copy)]
pub struct AccessLogFormat(Option<u32>);

impl Default for AccessLogFormat {
    fn default() -> Self {
        AccessLogFormat(Some(u32::MAX))
    }
}

impl AccessLogFormat {
    /// A format from `[access_log]`: `enabled` and the chosen field names.
    pub fn new(enabled: bool, fields: Option<&[String]>) -> Result<Self, String> {
        if !enabled {
            return Ok(AccessLogFormat(None));
        }
        let Some(fields) = fields else {
            return Ok(AccessLogFormat::default());
        };
        let mut mask = 0u32;
        for f in fields {
            let i = FIELDS
                .iter()
                .position(|known| known == f)
                .ok_or_else(|| format!("unknown field `{f}` (known: {})", FIELDS.join(", ")))?;
            mask |= 1 << i;
        }
        Ok(AccessLogFormat(Some(mask)))
    }

    /// Whether records are written: enabled in the config and by `RUST_LOG`.
    fn writes(self) -> bool {
        self.0.is_some() && tracing::enabled!(target: "weir::access", tracing::Level::INFO)
    }

    fn has(self, field: usize) -> bool {
        self.0.is_some_and(|m| m & (1 << field) != 0)
    }
}

/// What the client got.
pub struct Outcome {
    /// Status code.
    pub status: u16,
    /// Body length when known.
    pub length: Option<u64>,
}

/// The request line of an HTTP request (WebSocket events have none).
pub struct RequestLine<'a> {
    /// Its method.
    pub method: &'a str,
    /// Its path.
    pub path: &'a str,
    /// Its HTTP version.
    pub version: http::Version,
    /// Its `User-Agent`.
    pub user_agent: Option<&'a str>,
}

/// Writes the record of one request or event (when the format enables the log).
pub fn write(
    format: AccessLogFormat,
    ctx: &RequestContext,
    line: Option<RequestLine<'_>>,
    outcome: Outcome,
) {
    if !format.writes() {
        return;
    }
    let protocol = match &line {
        Some(l) => protocol(l.version),
        None => "WEBSOCKET",
    };
    Fields {
        request_id: &ctx.request_id,
        received: ctx.received,
        method: line.as_ref().map(|l| l.method),
        path: line.as_ref().map(|l| l.path),
        route_key: ctx.route_key.as_deref(),
        status: outcome.status,
        length: outcome.length,
        latency: ctx.started.elapsed(),
        integration_latency: ctx.integration.latency,
        integration_status: ctx.integration.status,
        integration_error: ctx.integration.error.as_deref(),
        principal_id: ctx.principal_id.as_deref(),
        authorizer_error: ctx.authorizer_error.as_deref(),
        source_ip: ctx.peer.client,
        user_agent: line
            .as_ref()
            .and_then(|l| l.user_agent)
            .or(ctx.user_agent.as_deref()),
        protocol,
        trace_id: Some(&ctx.trace.trace_id),
        connection_id: ctx.connection_id.as_deref(),
        event_type: ctx.event_type.map(EventType::name),
        cert_subject: ctx.client_cert.as_deref().map(|c| c.subject_dn.as_str()),
        cert_serial: ctx.client_cert.as_deref().map(|c| c.serial_number.as_str()),
    }
    .write(format);
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

/// One record's values, by [`FIELDS`]; `None` leaves a field out.
struct Fields<'a> {
    request_id: &'a str,
    received: SystemTime,
    method: Option<&'a str>,
    path: Option<&'a str>,
    route_key: Option<&'a str>,
    status: u16,
    length: Option<u64>,
    latency: Duration,
    integration_latency: Option<Duration>,
    integration_status: Option<u16>,
    integration_error: Option<&'a str>,
    principal_id: Option<&'a str>,
    authorizer_error: Option<&'a str>,
    source_ip: IpAddr,
    user_agent: Option<&'a str>,
    protocol: &'static str,
    trace_id: Option<&'a str>,
    connection_id: Option<&'a str>,
    event_type: Option<&'a str>,
    cert_subject: Option<&'a str>,
    cert_serial: Option<&'a str>,
}

impl Fields<'_> {
    /// Writes the fields `format` chooses, in the order of [`FIELDS`].
    fn write(&self, format: AccessLogFormat) {
        let on = |i: usize| format.has(i);
        let str_at = |line: &mut Line, i: usize, v: Option<&str>| {
            if let Some(v) = v.filter(|_| on(i)) {
                line.str(i, v);
            }
        };
        write_record(|line| {
            str_at(line, 0, Some(self.request_id));
            if on(1) {
                line.time(1, self.received);
            }
            str_at(line, 2, self.method);
            str_at(line, 3, self.path);
            str_at(line, 4, Some(self.route_key.unwrap_or("-")));
            if on(5) {
                line.num(5, self.status.into());
            }
            if let Some(n) = self.length.filter(|_| on(6)) {
                line.num(6, n);
            }
            if on(7) {
                line.ms(7, self.latency);
            }
            if let Some(d) = self.integration_latency.filter(|_| on(8)) {
                line.ms(8, d);
            }
            if let Some(s) = self.integration_status.filter(|_| on(9)) {
                line.num(9, s.into());
            }
            str_at(line, 10, self.integration_error);
            str_at(line, 11, self.principal_id);
            str_at(line, 12, self.authorizer_error);
            if on(13) {
                line.ip(13, self.source_ip);
            }
            str_at(line, 14, self.user_agent);
            str_at(line, 15, Some(self.protocol));
            str_at(line, 16, self.trace_id);
            str_at(line, 17, self.connection_id);
            str_at(line, 18, self.event_type);
            str_at(line, 19, self.cert_subject);
            str_at(line, 20, self.cert_serial);
        });
    }
}

/// Appends `ip` as text (IPv4 without the formatter: it is on every request's path).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Whether records are JSON (`--log-format json`) rather than text.
static JSON: AtomicBool = AtomicBool::new(false);

/// Writes records as JSON lines (`--log-format json`) instead of text; set once at
/// start, with the log format of everything else.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// A thread's records not yet written, on threads that called [`buffer_this_thread`].
const BUFFER_LIMIT: usize = 64 << 10;

thread_local! {
    static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Makes this thread keep its records until [`flush`] (or until it holds 64 KiB),
/// instead of writing each at once. For threads that call [`flush`] whenever they run
/// out of work, and at their end.
pub fn buffer_this_thread() {
    BUFFER.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(BUFFER_LIMIT)));
}

/// Writes this thread's kept records.
pub fn flush() {
    BUFFER.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut()
            && let Some(buf) = b.as_mut()
            && !buf.is_empty()
        {
            write_out(buf);
            buf.clear();
        }
    });
}

fn write_out(bytes: &[u8]) {
    // One `write_all` under stderr's lock, as `tracing` writes its lines: whole lines.
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// Formats one record with `fields` and writes or keeps it.
fn write_record(fields: impl FnOnce(&mut Line)) {
    let json = JSON.load(Ordering::Relaxed);
    let format = |out: &mut Vec<u8>| {
        let mut line = Line::start(out, json);
        fields(&mut line);
        line.finish();
    };
    BUFFER.with(|b| match b.try_borrow_mut().as_deref_mut() {
        Ok(Some(buf)) => {
            format(buf);
            if buf.len() >= BUFFER_LIMIT {
                write_out(buf);
                buf.clear();
            }
        }
        _ => {
            let mut out = Vec::with_capacity(512);
            format(&mut out);
            write_out(&out);
        }
    });
}

/// One record being written: the prefix of a `tracing` line (time, level, target),
/// then `name=value` fields (text) or members (JSON).
struct Line<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
}

impl<'a> Line<'a> {
    fn start(out: &'a mut Vec<u8>, json: bool) -> Self {
        let now = humantime::format_rfc3339_micros(SystemTime::now());
        if json {
            let _ = write!(
                out,
                r#"{{"timestamp":"{now}","level":"INFO","target":"weir::access""#
            );
        } else {
            let _ = write!(out, "{now}  INFO weir::access:");
        }
        Line { out, json }
    }

    fn key(&mut self, field: usize) {
        let name = FIELDS[field];
        if self.json {
            self.out.extend_from_slice(b",\"");
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b"\":");
        } else {
            self.out.push(b' ');
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'=');
        }
    }

    /// A quoted string, escaped for JSON (which reads fine in text too).
    fn str(&mut self, field: usize, value: &str) {
        self.key(field);
        self.out.push(b'"');
        let bytes = value.as_bytes();
        let mut plain = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f | 0x7f => b"",
                _ => continue,
            };
            self.out.extend_from_slice(&bytes[plain..i]);
            if escape.is_empty() {
                let _ = write!(self.out, "\\u{b:04x}");
            } else {
                self.out.extend_from_slice(escape);
            }
            plain = i + 1;
        }
        self.out.extend_from_slice(&bytes[plain..]);
        self.out.push(b'"');
    }

    fn num(&mut self, field: usize, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    /// Milliseconds with three decimals.
    fn ms(&mut self, field: usize, d: Duration) {
        self.key(field);
        let micros = d.as_micros();
        let _ = write!(self.out, "{}.{:03}", micros / 1000, micros % 1000);
    }

    /// RFC 3339 with milliseconds, quoted.
    fn time(&mut self, field: usize, t: SystemTime) {
        self.key(field);
        let _ = write!(self.out, "\"{}\"", humantime::format_rfc3339_millis(t));
    }

    /// An address, quoted.
    fn ip(&mut self, field: usize, ip: IpAddr) {
        self.key(field);
        let mut text = String::with_capacity(48);
        push_ip(&mut text, ip);
        self.out.push(b'"');
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'"');
    }

    fn finish(self) {
        if self.json {
            self.out.push(b'}');
        }
        self.out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_fields_by_name() {
        let f = AccessLogFormat::new(true, Some(&["status".into(), "traceId".into()])).unwrap();
        assert!(f.has(5) && f.has(16) && !f.has(0));
        assert!(AccessLogFormat::new(true, Some(&["nope".into()])).is_err());
        assert!(!AccessLogFormat::new(false, None).unwrap().has(0));
        assert!(AccessLogFormat::new(true, None).unwrap().has(3));
    }

    fn record(json: bool, fields: impl FnOnce(&mut Line)) -> String {
        let mut out = Vec::new();
        let mut line = Line::start(&mut out, json);
        fields(&mut line);
        line.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_records_look_like_the_log_lines_around_them() {
        let text = record(false, |l| {
            l.str(4, "GET /pets");
            l.num(5, 200);
            l.ms(7, Duration::from_micros(1_234_567));
            l.ip(13, std::net::Ipv4Addr::LOCALHOST.into());
        });
        let (time, rest) = text.split_once("  INFO weir::access: ").unwrap();
        assert!(time.parse::<humantime::Timestamp>().is_ok(), "{time}");
        assert_eq!(
            rest,
            "routeKey=\"GET /pets\" status=200 responseLatency=1234.567 sourceIp=\"127.0.0.1\"\n"
        );
    }

    #[test]
    fn json_records_parse_and_escape_what_they_must() {
        let hostile = "a\"b\\c\nd\u{1}é\u{7f}";
        let text = record(true, |l| {
            l.str(0, hostile);
            l.num(6, 0);
            l.ms(8, Duration::from_micros(5));
            l.time(1, SystemTime::UNIX_EPOCH);
        });
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["requestId"], hostile);
        assert_eq!(v["target"], "weir::access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["responseLength"], 0);
        assert_eq!(v["integrationLatency"], 0.005);
        assert_eq!(v["requestTime"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn addresses_are_written_as_the_formatter_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.9.255",
            "100.64.1.99",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    #[test]
    fn a_buffering_thread_keeps_records_until_it_flushes() {
        std::thread::spawn(|| {
            buffer_this_thread();
            write_record(|l| l.num(5, 204));
            let kept = BUFFER.with(|b| b.borrow().as_ref().map(Vec::len));
            assert!(kept.is_some_and(|n| n > 0));
            flush();
            let kept = BUFFER.with(|b| b.borrow().as_ref().map(Vec::len));
            assert_eq!(kept, Some(0));
        })
        .join()
        .unwrap();
    }
}
