//! A fault-injecting HTTP proxy in front of moto, test-side code: it forwards each request
//! to moto unchanged, or answers it itself the way a busy AWS endpoint does — a throttling
//! error in the service's own protocol, an HTTP 500 or 503 with an HTML body (a load
//! balancer's page, which the SDK cannot parse as an AWS error), or a dropped connection,
//! before or after moto saw the request. It can also delay every request.
//!
//! Requests are read one at a time off a kept-alive client connection (HTTP/1.1 framing by
//! `Content-Length`); each forwarded request gets its own connection to moto with
//! `Connection: close`, so a response is everything moto sends before it closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy answers instead of forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The service's throttling error (SSM `ThrottlingException`, S3 `SlowDown`, RDS
    /// `Throttling`, EC2 `RequestLimitExceeded`).
    Throttle,
    /// HTTP 500 with an HTML body.
    Html500,
    /// HTTP 503 with an HTML body.
    Html503,
    /// The connection closes before the request reaches moto.
    DropBefore,
    /// moto carries the request out, then the connection closes before the reply: the
    /// client cannot tell whether it happened (the hard case for creates).
    DropAfter,
    /// The service's access-denied error, worded as IAM words it (moto enforces no IAM
    /// by default): "User: … is not authorized to perform: ssm:GetParameter …".
    AccessDenied,
}

const RANDOM_FAULTS: [Fault; 5] = [
    Fault::Throttle,
    Fault::Html500,
    Fault::Html503,
    Fault::DropBefore,
    Fault::DropAfter,
];

struct Rule {
    needle: String,
    fault: Fault,
    remaining: Option<u32>,
}

struct Knobs {
    upstream: SocketAddr,
    delay_ms: AtomicU64,
    /// Share of requests that get a random fault, in parts per thousand.
    fault_per_mille: AtomicU32,
    /// Requests whose head or body contains the text get the fault, every time or as many
    /// times as the count says.
    fail_matching: Mutex<Vec<Rule>>,
    requests: AtomicU64,
    /// The operation of each request, in arrival order ([`FaultProxy::operations`]).
    operations: Mutex<Vec<String>>,
    faults: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    seed: AtomicU64,
    stop: AtomicBool,
}

pub struct FaultProxy {
    port: u16,
    knobs: Arc<Knobs>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let knobs = Arc::new(Knobs {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            delay_ms: AtomicU64::new(0),
            fault_per_mille: AtomicU32::new(0),
            fail_matching: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            operations: Mutex::new(Vec::new()),
            faults: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            stop: AtomicBool::new(false),
        });
        let k = knobs.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if k.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let k = k.clone();
                thread::spawn(move || serve(conn, &k));
            }
        });
        FaultProxy { port, knobs }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Delays every request by `delay` before it is forwarded or answered.
    pub fn set_delay(&self, delay: Duration) {
        self.knobs
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Answers this share of requests (0.0–1.0) with a random [`Fault`].
    pub fn set_fault_rate(&self, rate: f64) {
        self.knobs
            .fault_per_mille
            .store((rate * 1000.0).round() as u32, Ordering::Relaxed);
    }

    /// Always answers requests mentioning `needle` (a bucket or parameter name) with `fault`.
    pub fn fail_matching(&self, needle: &str, fault: Fault) {
        self.add_rule(needle, fault, None);
    }

    /// Answers the first request mentioning `needle` (`Action=CreateDBInstance`) with
    /// `fault`; later ones pass (the SDK's retry of it reaches moto).
    pub fn fail_once_matching(&self, needle: &str, fault: Fault) {
        self.add_rule(needle, fault, Some(1));
    }

    fn add_rule(&self, needle: &str, fault: Fault, remaining: Option<u32>) {
        self.knobs.fail_matching.lock().unwrap().push(Rule {
            needle: needle.to_owned(),
            fault,
            remaining,
        });
    }

    pub fn clear_faults(&self) {
        self.set_fault_rate(0.0);
        self.knobs.fail_matching.lock().unwrap().clear();
    }

    /// Requests received (forwarded or answered).
    pub fn requests(&self) -> u64 {
        self.knobs.requests.load(Ordering::Relaxed)
    }

    /// Each request's operation, `service:Operation` (`ssm:GetParameters`), as received:
    /// the JSON protocols name it in `X-Amz-Target`, the query protocols in `Action=`, RPC
    /// v2 in the path; other
    /// requests (S3's REST calls) show as `service:METHOD`.
    pub fn operations(&self) -> Vec<String> {
        self.knobs.operations.lock().unwrap().clone()
    }

    /// Requests read but not yet answered (a kill now lands mid-request).
    pub fn in_flight(&self) -> u64 {
        self.knobs.in_flight.load(Ordering::Relaxed)
    }

    /// The most requests that were in flight at once since the proxy started.
    pub fn max_in_flight(&self) -> u64 {
        self.knobs.max_in_flight.load(Ordering::Relaxed)
    }

    /// Requests answered with a fault.
    pub fn faults(&self) -> u64 {
        self.knobs.faults.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.knobs.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request as read off the client connection.
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The signing service from `Authorization: AWS4-HMAC-SHA256 Credential=AK/date/region/SERVICE/…`.
    fn service(&self) -> &str {
        self.header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or("")
    }

    fn operation(&self) -> String {
        let op = self
            .header("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .map(str::to_owned)
            .or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
            })
            // RPC v2 CBOR (CloudWatch): POST /service/<Service>/operation/<Operation>.
            .or_else(|| {
                let path = self.head.split(' ').nth(1)?;
                Some(path.split_once("/operation/")?.1.to_owned())
            })
            .unwrap_or_else(|| self.head.split(' ').next().unwrap_or("").to_owned());
        format!("{}:{op}", self.service())
    }

    fn mentions(&self, needle: &str) -> bool {
        self.head.contains(needle) || String::from_utf8_lossy(&self.body).contains(needle)
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut req = Request {
        head,
        body: Vec::new(),
    };
    assert!(
        req.header("transfer-encoding").is_none(),
        "fault proxy: chunked request bodies are not supported"
    );
    let len: usize = req
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    req.body = vec![0; len];
    reader.read_exact(&mut req.body).ok()?;
    Some(req)
}

fn serve(client: TcpStream, knobs: &Knobs) {
    let _ = client.set_nodelay(true);
    let mut writer = client.try_clone().expect("clone client stream");
    let mut reader = BufReader::new(client);
    while let Some(req) = read_request(&mut reader) {
        knobs.requests.fetch_add(1, Ordering::Relaxed);
        knobs.operations.lock().unwrap().push(req.operation());
        let now = knobs.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        knobs.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let _done = InFlight(&knobs.in_flight);
        let delay = knobs.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            thread::sleep(Duration::from_millis(delay));
        }
        let fault = pick_fault(knobs, &req);
        if fault.is_some() {
            knobs.faults.fetch_add(1, Ordering::Relaxed);
        }
        let reply = match fault {
            None => forward(knobs.upstream, &req),
            Some(Fault::DropBefore) => return,
            Some(Fault::DropAfter) => {
                let _ = forward(knobs.upstream, &req);
                return;
            }
            Some(Fault::Throttle) => Some(throttle(&req)),
            Some(Fault::Html500) => Some(html(500, "Internal Server Error")),
            Some(Fault::Html503) => Some(html(503, "Service Unavailable")),
            Some(Fault::AccessDenied) => Some(access_denied(&req)),
        };
        let Some(reply) = reply else { return };
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Counts a request as answered when dropped, whichever way `serve` leaves it.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn pick_fault(knobs: &Knobs, req: &Request) -> Option<Fault> {
    let mut rules = knobs.fail_matching.lock().unwrap();
    if let Some(rule) = rules
        .iter_mut()
        .find(|r| r.remaining != Some(0) && req.mentions(&r.needle))
    {
        if let Some(n) = &mut rule.remaining {
            *n -= 1;
        }
        return Some(rule.fault);
    }
    drop(rules);
    let rate = knobs.fault_per_mille.load(Ordering::Relaxed);
    if rate == 0 {
        return None;
    }
    let r = next_random(knobs);
    ((r % 1000) < u64::from(rate))
        .then(|| RANDOM_FAULTS[((r / 1000) % RANDOM_FAULTS.len() as u64) as usize])
}

/// xorshift64*, shared by all connections: faults fall on different requests each run.
fn next_random(knobs: &Knobs) -> u64 {
    let mut x = knobs.seed.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y >> 12;
        y ^= y << 25;
        y ^= y >> 27;
        match knobs
            .seed
            .compare_exchange(x, y, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return y.wrapping_mul(0x2545_F491_4F6C_DD1D),
            Err(now) => x = now,
        }
    }
}

/// Sends the request to moto on a fresh connection and returns moto's whole reply, framed
/// for the kept-alive client connection; `None` when moto could not be reached.
fn forward(upstream: SocketAddr, req: &Request) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    let mut head = String::new();
    for (i, line) in req.head.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0
            && line
                .split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).ok()?;
    up.write_all(&req.body).ok()?;
    let mut reply = Vec::new();
    up.read_to_end(&mut reply).ok()?;
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (rhead, body) = reply.split_at(split);
    let rhead = String::from_utf8_lossy(rhead).into_owned();
    let mut out = String::new();
    let mut framed = req.head.starts_with("HEAD ");
    for line in rhead.split("\r\n").filter(|l| !l.is_empty()) {
        let name = line
            .split_once(':')
            .map(|(k, _)| k.trim().to_ascii_lowercase());
        match name.as_deref() {
            Some("connection") => continue,
            Some("content-length" | "transfer-encoding") => framed = true,
            _ => {}
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    let status: u16 = rhead
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if !framed && status != 204 && status != 304 {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Some(bytes)
}

/// IAM's wording, with the action taken from the request (`X-Amz-Target`, `Action=`); S3's
/// bare "Access Denied".
fn access_denied(req: &Request) -> Vec<u8> {
    let service = req.service();
    let op = req
        .header("x-amz-target")
        .and_then(|t| t.split('.').nth(1).map(str::to_owned))
        .or_else(|| {
            let body = String::from_utf8_lossy(&req.body);
            body.split('&')
                .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
        })
        .unwrap_or_default();
    let message = format!(
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: {service}:{op} because no identity-based policy allows the {service}:{op} action"
    );
    match service {
        // A HEAD reply has no body (S3 HeadBucket).
        "s3" if req.head.starts_with("HEAD ") => {
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nx-amzn-RequestId: fault-proxy\r\n\r\n"
                .to_vec()
        }
        "s3" => response(
            403,
            "Forbidden",
            "application/xml",
            // S3 says only this, naming neither action nor resource.
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>fault-proxy</RequestId></Error>",
        ),
        _ if req.header("x-amz-target").is_some() => response(
            400,
            "Bad Request",
            "application/x-amz-json-1.1",
            &format!("{{\"__type\":\"AccessDeniedException\",\"message\":\"{message}\"}}"),
        ),
        _ => response(
            403,
            "Forbidden",
            "text/xml",
            &format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            ),
        ),
    }
}

fn response(status: u16, reason: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: fault-proxy\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn html(status: u16, reason: &str) -> Vec<u8> {
    let body = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    response(status, reason, "text/html", &body)
}

/// A throttling error in the protocol of the service the request is signed for.
fn throttle(req: &Request) -> Vec<u8> {
    match req.service() {
        "s3" => response(
            503,
            "Slow Down",
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>",
        ),
        "ec2" => response(
            503,
            "Service Unavailable",
            "text/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>",
        ),
        "ssm" | "logs" | "ecs" | "sts" if req.header("x-amz-target").is_some() => response(
            400,
            "Bad Request",
            "application/x-amz-json-1.1",
            "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}",
        ),
        _ => response(
            400,
            "Bad Request",
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>",
        ),
    }
}
